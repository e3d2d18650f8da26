"""Receive Fourthline's QES webhooks, and the signer's answers, in a Starlette (or FastAPI) app.

:mod:`qes_async.asgi` does the work: ``starlette_routes(receiver)`` (or mounting
``webhook_app(receiver)``) serves the receiver with the same checks and answers as the
aiohttp routes (credentials before any body byte, the body bounded in size and in time,
408 after ``body_timeout``). With a :class:`~qes_async.SignerInbox` (the signer of your
flows) the app also serves a JSON API for a front end, built on the framework-neutral
signer helpers: ``GET /flows/{id}/pending`` (what the flow waits for),
``POST /flows/{id}/consent`` (``{"approve": true}``) and ``POST /flows/{id}/passcode``
(``{"passcode": "123456"}``; a wrong one answers 422 with ``attempts_left``).
Run with ``uvicorn examples.starlette_webhooks:app`` after setting the credentials below.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from qes_async import SignerInbox, WebhookDispatcher
from qes_async.asgi import (
    answer_status,
    pending_question,
    starlette_routes,
    submit_consent,
    submit_passcode,
)
from qes_async.webhooks import BasicAuth, WebhookReceiver

MAX_JSON = 4096  # a signer's answer is tiny: read no more of a request body


def create_app(receiver: WebhookReceiver, inbox: SignerInbox | None = None) -> Starlette:
    """A Starlette app that serves ``receiver`` on ``POST {prefix}/{signature_id}`` (and,
    with Bearer auth, its token endpoint), and with ``inbox`` the signer's JSON endpoints
    (see the module docstring)."""
    routes: list[BaseRoute] = [*starlette_routes(receiver)]
    if inbox is not None:
        routes += signer_routes(inbox)
    return Starlette(routes=routes)


def signer_routes(inbox: SignerInbox) -> list[BaseRoute]:
    """JSON endpoints that show what a flow asks and hand the signer's answers to it."""

    async def pending(request: Request) -> JSONResponse:
        return JSONResponse(pending_question(inbox, request.path_params["flow_id"]))

    async def consent(request: Request) -> JSONResponse:
        body = await _small_json(request)
        answer = await submit_consent(inbox, request.path_params["flow_id"], body.get("approve"))
        return JSONResponse(answer, status_code=answer_status(answer))

    async def passcode(request: Request) -> JSONResponse:
        # Straight from the body into submit_passcode, which holds it masked: no local here
        # keeps the passcode (error trackers record the locals of a traceback's frames).
        flow_id = request.path_params["flow_id"]
        answer = await submit_passcode(inbox, flow_id, (await _small_json(request)).get("passcode"))
        return JSONResponse(answer, status_code=answer_status(answer))

    return [
        Route("/flows/{flow_id}/pending", pending, methods=["GET"]),
        Route("/flows/{flow_id}/consent", consent, methods=["POST"]),
        Route("/flows/{flow_id}/passcode", passcode, methods=["POST"]),
    ]


async def _small_json(request: Request) -> dict[str, object]:
    """The body as a JSON object, reading at most MAX_JSON bytes; {} for anything else."""
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_JSON:
            return {}
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def default_app() -> Starlette:
    """The app ``uvicorn`` serves: credentials from the environment."""
    dispatcher = WebhookDispatcher()  # give the same one to your HybridWaiter
    auth = BasicAuth(
        os.environ.get("QES_WEBHOOK_USER", "fourthline"),
        os.environ.get("QES_WEBHOOK_PASSWORD", "change-me"),
    )
    return create_app(WebhookReceiver(dispatcher, auth))


app = default_app()
