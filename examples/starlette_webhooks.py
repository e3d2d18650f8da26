"""Receive Fourthline's QES webhooks, and the signer's answers, in a Starlette (or FastAPI) app.

The receiver's framework-neutral core (``receiver.serve``) takes method, path, headers and
the body as a stream and returns a status, headers and body; it checks the credentials
before reading any body byte and bounds the read in size and time (408 after
``body_timeout``), so wiring it into any ASGI framework is one small route function.
With a :class:`~qes_async.SignerInbox` (the signer of your flows) the app also serves a JSON
API for a front end: ``GET /flows/{id}/pending`` (what the flow waits for),
``POST /flows/{id}/consent`` (``{"approve": true}``) and ``POST /flows/{id}/passcode``
(``{"passcode": "123456"}``; a wrong one answers 422 with ``attempts_left``).
Run with ``uvicorn examples.starlette_webhooks:app`` after setting the credentials below.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qes_async import ConsentRequest, PasscodeRequest, SignerInbox, WebhookDispatcher
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver


def create_app(receiver: WebhookReceiver, inbox: SignerInbox | None = None) -> Starlette:
    """A Starlette app that serves ``receiver`` on ``POST {prefix}/{signature_id}``, and
    with ``inbox`` the signer's JSON endpoints (see the module docstring)."""

    async def webhook(request: Request) -> Response:
        # serve() checks method, path and credentials before reading any body byte, then
        # reads at most the route's size limit within receiver.body_timeout (else 413/408).
        raw_path = request.scope.get("raw_path")
        answer = await receiver.serve(
            request.method,
            request.url.path,
            request.headers,
            request.stream(),
            raw_path=raw_path.decode("latin-1") if raw_path else None,
        )
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    routes = [Route(f"{receiver.prefix}/{{signature_id}}", webhook, methods=["POST"])]
    if isinstance(receiver.auth, BearerAuth):  # the AuthUrl to configure at Fourthline
        routes.insert(0, Route(receiver.token_path, webhook, methods=["POST"]))
    if inbox is not None:
        routes += signer_routes(inbox)
    return Starlette(routes=routes)


def signer_routes(inbox: SignerInbox) -> list[Route]:
    """JSON endpoints that show what a flow asks and hand the signer's answers to it."""

    async def pending(request: Request) -> JSONResponse:
        asked = inbox.pending(request.path_params["flow_id"])
        if isinstance(asked, ConsentRequest):
            return JSONResponse(
                {
                    "waiting_for": "consent",
                    "deadline": asked.deadline,
                    "documents": [d.display_name or d.file_name for d in asked.documents],
                    "legal_conditions": [
                        {"title": c.title or c.id, "version": c.version, "url": c.url}
                        for c in asked.legal_conditions
                    ],
                }
            )
        if isinstance(asked, PasscodeRequest):
            return JSONResponse(
                {
                    "waiting_for": "passcode",
                    "deadline": asked.deadline,
                    "sent_to": asked.masked_mobile_number,  # masked: +31******678
                    "attempts_left": asked.attempts_left,
                }
            )
        return JSONResponse({"waiting_for": None if asked is None else "selfie"})

    async def consent(request: Request) -> JSONResponse:
        body = await request.json()
        approve = isinstance(body, dict) and body.get("approve") is True
        answer = await inbox.submit_consent(request.path_params["flow_id"], approve)
        return _answer(answer.kind.value, answer.attempts_left, answer.message)

    async def passcode(request: Request) -> JSONResponse:
        body = await request.json()
        code = body.get("passcode") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code.strip():
            return JSONResponse({"result": "invalid", "message": "send a passcode"}, 400)
        answer = await inbox.submit_passcode(request.path_params["flow_id"], code.strip())
        return _answer(answer.kind.value, answer.attempts_left, answer.message)

    return [
        Route("/flows/{flow_id}/pending", pending, methods=["GET"]),
        Route("/flows/{flow_id}/consent", consent, methods=["POST"]),
        Route("/flows/{flow_id}/passcode", passcode, methods=["POST"]),
    ]


# How each SignerAnswer kind maps to HTTP (AnswerKind values; the enum is not exported).
_ANSWER_STATUS = {"accepted": 200, "pending": 202, "wrong_passcode": 422, "no_such_flow": 404}


def _answer(kind: str, attempts_left: int | None, message: str) -> JSONResponse:
    body = {"result": kind, "attempts_left": attempts_left, "message": message}
    return JSONResponse(body, status_code=_ANSWER_STATUS.get(kind, 409))


def default_app() -> Starlette:
    """The app ``uvicorn`` serves: credentials from the environment."""
    dispatcher = WebhookDispatcher()  # give the same one to your HybridWaiter
    auth = BasicAuth(
        os.environ.get("QES_WEBHOOK_USER", "fourthline"),
        os.environ.get("QES_WEBHOOK_PASSWORD", "change-me"),
    )
    return create_app(WebhookReceiver(dispatcher, auth))


app = default_app()
