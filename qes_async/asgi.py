"""The webhook receiver and the signer pages under any ASGI framework (FastAPI, Starlette...).

:class:`WebhookApp` is a pure ASGI application (nothing imported from a framework) around
:meth:`WebhookReceiver.serve <qes_async.webhooks.WebhookReceiver.serve>`: the same single
check as the aiohttp routes, so the same answers for the same requests. Method, path and
credentials are checked before any body byte is read; the body is read up to the route's
size limit (else 413) within ``body_timeout`` (else 408). It answers the receiver's own
absolute paths (``{prefix}/{signatureId}`` and, with Bearer, the token endpoint), so mount
it at the receiver's prefix or any leading part of it::

    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", password))
    app = FastAPI()
    app.mount("/fourthline", webhook_app(receiver))   # POST /fourthline/qes/{signatureId}
    # or, with Starlette's router: Starlette(routes=[*starlette_routes(receiver), ...])

The signer-page helpers turn a :class:`~qes_async.SignerInbox` into plain JSON-able data
for any framework's handlers: :func:`pending_question` (what a flow waits for), and
:func:`submit_consent` / :func:`submit_passcode` (the typed answer as a dict, with the HTTP
status to answer from :func:`answer_status`). They never carry a passcode or a full mobile
number.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from ._core.redact import Secret, reveal
from ._signers.signer import (
    AnswerKind,
    ConsentRequest,
    PasscodeRequest,
    SelfieRequest,
    SignerAnswer,
    SignerInbox,
)
from .webhooks import BearerAuth, WebhookReceiver, WebhookResponse

__all__ = [
    "MAX_PASSCODE_LENGTH",
    "WebhookApp",
    "answer_status",
    "pending_question",
    "starlette_routes",
    "submit_consent",
    "submit_passcode",
    "webhook_app",
]

log = logging.getLogger("qes_async.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The longest passcode :func:`submit_passcode` passes on (SMS passcodes are short).
MAX_PASSCODE_LENGTH = 64


class _Disconnected(Exception):
    """The client went away before its body was whole."""


class WebhookApp:
    """A pure ASGI application serving a :class:`~qes_async.webhooks.WebhookReceiver`.

    Usable as a whole app (``uvicorn module:app``), a Starlette/FastAPI mount or a route
    endpoint. The path matched is the whole request path (a mount's ``root_path`` included),
    so the receiver's prefix is the URL to configure at Fourthline wherever it is mounted.
    Lifespan events are acknowledged; a websocket is closed.
    """

    def __init__(self, receiver: WebhookReceiver) -> None:
        if not isinstance(receiver, WebhookReceiver):
            raise TypeError("WebhookApp needs a WebhookReceiver")
        self.receiver = receiver
        self._warned_mount = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path = _full_path(scope)
        self._check_mount(scope)
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else None
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        try:
            answer = await self.receiver.serve(
                str(scope.get("method", "GET")),
                path,
                headers,
                _body(receive),
                raw_path=raw_path,
            )
        except _Disconnected:
            return  # nobody to answer
        await _send_answer(send, answer)

    def _check_mount(self, scope: Scope) -> None:
        root = str(scope.get("root_path", "") or "").rstrip("/")
        if not root or self._warned_mount:
            return
        routes = [self.receiver.prefix + "/", self.receiver.token_path]
        if not any(r.startswith(root + "/") for r in routes):
            self._warned_mount = True
            log.warning(
                "the webhook app is mounted at %r but the receiver's prefix is %r: every "
                "webhook is answered 404; mount it at the prefix (or a leading part of it) "
                "or give WebhookReceiver(prefix=...) the mounted path",
                root,
                self.receiver.prefix,
            )

    def __repr__(self) -> str:
        return f"WebhookApp({self.receiver!r})"


def webhook_app(receiver: WebhookReceiver) -> WebhookApp:
    """The ASGI app to mount (``app.mount("/fourthline", webhook_app(receiver))``)."""
    return WebhookApp(receiver)


def starlette_routes(receiver: WebhookReceiver) -> list[Any]:
    """Starlette routes (``starlette.routing.Route``) for the receiver's paths, every method
    passed to the receiver (so a GET is its 405, as with aiohttp). Needs Starlette (FastAPI
    brings it); :class:`WebhookApp` itself does not."""
    try:
        from starlette.routing import Route
    except ImportError as error:  # pragma: no cover - starlette is in the dev extra
        raise ImportError(
            "starlette_routes needs Starlette (pip install starlette, or FastAPI); "
            "without it, mount webhook_app(receiver) in your ASGI framework"
        ) from error
    endpoint = WebhookApp(receiver)
    routes = [Route(f"{receiver.prefix}/{{signature_id}}", endpoint)]
    if isinstance(receiver.auth, BearerAuth):
        routes.insert(0, Route(receiver.token_path, endpoint))
    return routes


def _full_path(scope: Scope) -> str:
    """The request path as the client sent it (decoded): ``path`` includes ``root_path``
    under current ASGI servers and Starlette mounts; older ones strip it."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", "") or "")
    if root and not path.startswith(root):
        return root.rstrip("/") + path
    return path


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            yield bytes(chunk)
        if not message.get("more_body", False):
            return


async def _send_answer(send: Send, answer: WebhookResponse) -> None:
    headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
    ]
    if answer.status != 204:
        headers.append((b"content-length", str(len(answer.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# ------------------------------------------------------------------------ signer pages


def pending_question(inbox: SignerInbox, flow_id: str) -> dict[str, Any]:
    """What the flow ``flow_id`` waits for from its signer, as JSON-able data.

    ``{"waiting_for": None}`` when nothing; else ``"consent"`` (with ``documents``,
    ``legal_conditions``, ``sent_to``, ``deadline``), ``"passcode"`` (``sent_to``,
    ``length``, ``attempts_left``, ``retry``, ``feedback``, ``deadline``) or ``"selfie"``.
    ``sent_to`` is the masked mobile number; a passcode is never included.
    """
    asked = inbox.pending(flow_id)
    if isinstance(asked, ConsentRequest):
        return {
            "waiting_for": "consent",
            "signature_id": asked.signature_id,
            "deadline": asked.deadline,
            "sent_to": asked.masked_mobile_number,
            "documents": [
                {
                    "file_name": d.file_name,
                    "display_name": d.display_name or d.file_name,
                }
                for d in asked.documents
            ],
            "legal_conditions": [
                {
                    "id": c.id,
                    "title": c.title or c.id,
                    "version": c.version,
                    "url": c.url,
                    "text": c.text,
                }
                for c in asked.legal_conditions
            ],
        }
    if isinstance(asked, PasscodeRequest):
        feedback = ""
        if asked.retry:
            left = "" if asked.attempts_left is None else f" {asked.attempts_left} attempts left."
            feedback = "Wrong passcode." + left
        return {
            "waiting_for": "passcode",
            "signature_id": asked.signature_id,
            "deadline": asked.deadline,
            "sent_to": asked.masked_mobile_number,
            "length": asked.length,
            "attempts_left": asked.attempts_left,
            "retry": asked.retry,
            "feedback": feedback,
        }
    if isinstance(asked, SelfieRequest):
        return {
            "waiting_for": "selfie",
            "signature_id": asked.signature_id,
            "deadline": asked.deadline,
        }
    return {"waiting_for": None}


async def submit_consent(inbox: SignerInbox, flow_id: str, approve: object) -> dict[str, Any]:
    """Approve (``True``) or decline (``False``) for the flow ``flow_id``.

    Returns ``{"result", "accepted", "attempts_left", "message"}``; ``result`` is an
    :class:`~qes_async.AnswerKind` value or ``"invalid"`` when ``approve`` is not a bool
    (nothing is submitted then). :func:`answer_status` gives the HTTP status.
    """
    if not isinstance(approve, bool):
        return _invalid("approve must be true (approve) or false (decline)")
    return _answer(await inbox.submit_consent(flow_id, approve))


async def submit_passcode(inbox: SignerInbox, flow_id: str, passcode: object) -> dict[str, Any]:
    """Give the SMS passcode for the flow ``flow_id`` (surrounding blanks are dropped).

    Returns ``{"result", "accepted", "attempts_left", "message"}`` as
    :func:`submit_consent`; a wrong passcode is ``"wrong_passcode"`` with
    ``attempts_left``. A missing, empty, over-long (more than
    :data:`MAX_PASSCODE_LENGTH`) or unprintable passcode is ``"invalid"`` and not
    submitted. The passcode itself is never in the answer.
    """
    # Held masked from the first line (frame locals reach error trackers).
    code = _held_passcode(passcode)
    del passcode
    if code is None:
        return _invalid(
            f"send the passcode from the SMS (1 to {MAX_PASSCODE_LENGTH} printable characters)"
        )
    return _answer(await inbox.submit_passcode(flow_id, code))


def _held_passcode(passcode: object) -> Secret | None:
    """A submitted passcode without surrounding blanks, as a Secret; None when invalid."""
    text = reveal(passcode).strip() if isinstance(passcode, (str, Secret)) else ""
    if not text or len(text) > MAX_PASSCODE_LENGTH or not text.isprintable():
        return None
    return Secret(text)


_STATUS = {
    AnswerKind.ACCEPTED.value: 200,
    AnswerKind.PENDING.value: 202,
    AnswerKind.MOVING.value: 202,
    AnswerKind.WRONG_PASSCODE.value: 422,
    AnswerKind.NO_SUCH_FLOW.value: 404,
    AnswerKind.EXPIRED.value: 410,
    AnswerKind.NOT_ASKED.value: 409,
    "invalid": 400,
}


def answer_status(answer: MutableMapping[str, Any] | dict[str, Any]) -> int:
    """The HTTP status for a :func:`submit_consent` / :func:`submit_passcode` answer:
    200 accepted, 202 pending or moving (kept; the answer then has ``retry_after``), 400
    invalid, 404 no such flow, 409 not asked, 410 expired, 422 wrong passcode."""
    return _STATUS.get(str(answer.get("result")), 409)


def _answer(answer: SignerAnswer) -> dict[str, Any]:
    body: dict[str, Any] = {
        "result": answer.kind.value,
        "accepted": answer.accepted,
        "attempts_left": answer.attempts_left,
        "message": answer.message,
    }
    if answer.retry_after is not None:  # moving: when the page should look again
        body["retry_after"] = answer.retry_after
    return body


def _invalid(message: str) -> dict[str, Any]:
    return {"result": "invalid", "accepted": False, "attempts_left": None, "message": message}
