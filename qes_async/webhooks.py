"""Receive Fourthline's QES webhooks and hand them to the waiters.

:class:`WebhookReceiver` has a framework-neutral core, :meth:`WebhookReceiver.handle`
(method, path, headers and body in; a :class:`WebhookResponse` out), plus ready aiohttp
routes. It authenticates the call (:class:`BasicAuth` or :class:`BearerAuth`, whose token
endpoint it also serves), validates the body, publishes a :class:`~qes_async.WebhookEvent`
to a :class:`~qes_async.WebhookDispatcher` and answers at once; the waiters re-read the
status afterwards, as the service asks. Bad input gets the right 4xx, never a 500::

    dispatcher = WebhookDispatcher()
    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", password))
    app.add_routes(receiver.aiohttp_routes())     # POST /fourthline/qes/{signatureId}
    waiter = HybridWaiter(client, dispatcher)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web

from ._clock import Clock, SystemClock
from ._dispatcher import WebhookDispatcher
from ._errors import InvalidInputError
from ._lenient import read_status_code
from ._models import ErrorDetail, Status, WebhookEvent
from ._redact import excerpt
from ._webhook_auth import AuthResult, BasicAuth, BearerAuth

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "WebhookDispatcher",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookResponse",
]

log = logging.getLogger("qes_async.webhooks")

DEFAULT_PREFIX = "/fourthline/qes"
DEFAULT_MAX_BODY = 64 * 1024


@attrs.frozen
class WebhookResponse:
    """What to answer: an HTTP status, headers and a (JSON or empty) body."""

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = attrs.field(default=b"", repr=False)


def _json(status: int, data: Mapping[str, object], **headers: str) -> WebhookResponse:
    hdrs = {"Content-Type": "application/json", **headers}
    return WebhookResponse(status, hdrs, json.dumps(data).encode("utf-8"))


def _problem(status: int, error: str, detail: str, **headers: str) -> WebhookResponse:
    return _json(status, {"error": error, "detail": detail}, **headers)


class WebhookReceiver:
    """Authenticates, validates and dispatches Fourthline's webhooks.

    Args:
        dispatcher: where accepted events are published.
        auth: :class:`BasicAuth` or :class:`BearerAuth`.
        prefix: the path the signature id is appended to (``POST {prefix}/{signatureId}``).
        token_path: the Bearer token endpoint, the AuthUrl to configure at Fourthline
            (default ``{prefix}/oauth2/token``); served only with :class:`BearerAuth`.
        max_body: the largest accepted body in bytes; larger gets 413.
        clock: the clock stamping ``received_at`` (default: the dispatcher's); a
            :class:`BearerAuth` without a clock of its own is given this one.
    """

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        auth: BasicAuth | BearerAuth,
        *,
        prefix: str = DEFAULT_PREFIX,
        token_path: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(auth, (BasicAuth, BearerAuth)):
            raise InvalidInputError("auth", "give BasicAuth(...) or BearerAuth(...)")
        if max_body < 1:
            raise InvalidInputError("max_body", "must be >= 1 byte")
        self.dispatcher = dispatcher
        self.auth = auth
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.token_path = token_path or f"{self.prefix}/oauth2/token"
        self.max_body = max_body
        self.clock: Clock = clock if clock is not None else dispatcher.clock
        if isinstance(auth, BearerAuth) and isinstance(auth.clock, SystemClock):
            auth.clock = self.clock
        self.accepted = 0
        self.refused = 0

    # ------------------------------------------------------------------ the neutral core

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookResponse:
        """Answer one HTTP request (synchronous, never raises for any input).

        Args:
            method: the HTTP method.
            path: the request path, without query string.
            headers: the request headers (any case).
            body: the raw body; pass at most ``max_body + 1`` bytes of a larger one.
        """
        return self._answer(method.upper(), path, _lower(headers), body, prechecked=False)

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, prechecked: bool
    ) -> WebhookResponse:
        try:
            response = self._dispatch(method, path, headers, body, prechecked)
        except Exception:  # a bug must not become a 500 loop of retries with a traceback
            log.exception("webhook handling failed unexpectedly")
            response = _problem(400, "bad_request", "the webhook could not be processed")
        if response.status < 300:
            self.accepted += 1
        else:
            self.refused += 1
        return response

    def precheck(
        self, method: str, path: str, headers: Mapping[str, str]
    ) -> WebhookResponse | None:
        """The refusal decided by method, path, headers alone (before reading a body)."""
        hdrs = _lower(headers)
        method = method.upper()
        if path == self.token_path and isinstance(self.auth, BearerAuth):
            return None if method == "POST" else _not_allowed()
        signature_id = self._signature_id(path)
        if signature_id is None:
            return _problem(404, "not_found", "no webhook route here")
        if method != "POST":
            return _not_allowed()
        refusal = self._refuse_credentials(self.auth.check(hdrs))
        if refusal is not None:
            return refusal
        declared = hdrs.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return _too_large(self.max_body)
        return None

    def _dispatch(
        self, method: str, path: str, headers: dict[str, str], body: bytes, prechecked: bool
    ) -> WebhookResponse:
        refusal = None if prechecked else self.precheck(method, path, headers)
        if refusal is not None:
            return refusal
        if path == self.token_path and isinstance(self.auth, BearerAuth):
            return self._token(headers, body)
        signature_id = self._signature_id(path)
        assert signature_id is not None  # precheck refused every other path
        if len(body) > self.max_body:
            return _too_large(self.max_body)
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return _problem(415, "unsupported_media_type", "send application/json")
        event = self._parse(signature_id, body)
        if isinstance(event, WebhookResponse):
            return event
        self.dispatcher.publish(event)
        log.info("webhook for %s: status %s", signature_id, event.status.value)
        return WebhookResponse(204)

    def _token(self, headers: dict[str, str], body: bytes) -> WebhookResponse:
        assert isinstance(self.auth, BearerAuth)
        if len(body) > self.max_body:
            return _too_large(self.max_body)
        answer = self.auth.issue(headers, body)
        if answer.status != 200:
            log.warning("token request refused (HTTP %d)", answer.status)
        return _json(answer.status, answer.body, **answer.headers)

    def _refuse_credentials(self, result: AuthResult) -> WebhookResponse | None:
        if result.ok:
            return None
        log.warning("webhook refused: missing or wrong credentials")
        return _problem(
            401,
            "unauthorized",
            "missing or wrong credentials",
            **{"WWW-Authenticate": result.challenge},
        )

    def _signature_id(self, path: str) -> str | None:
        head = self.prefix + "/"
        if not path.startswith(head):
            return None
        signature_id = path[len(head) :]
        if not signature_id or "/" in signature_id or len(signature_id) > 200:
            return None
        return signature_id

    def _parse(self, signature_id: str, body: bytes) -> WebhookEvent | WebhookResponse:
        """The body as an event, or the 400/422 that refuses it."""
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.warning("webhook for %s: malformed JSON: %s", signature_id, excerpt(body, 80))
            return _problem(400, "malformed_json", "the body is not valid UTF-8 JSON")
        if not isinstance(data, dict):
            return _problem(400, "malformed_json", "the body must be a JSON object")
        body_id = data.get("signatureId", signature_id)
        if body_id != signature_id:
            log.warning("webhook refused: body signatureId differs from the path")
            return _problem(422, "signature_id_mismatch", "signatureId differs from the path")
        status = data.get("status")
        if not isinstance(status, str) or not status:
            return _problem(422, "invalid_status", "status must be a non-empty string")
        try:
            code = read_status_code(data.get("statusCode"))
        except ValueError:
            return _problem(
                422,
                "invalid_status_code",
                "statusCode must be an integer, a numeric string or null",
            )
        return WebhookEvent(
            signature_id=signature_id,
            status=Status(status),
            status_code=code,
            errors=_errors(data.get("errors")),
            received_at=self.clock.time(),
        )

    # ---------------------------------------------------------------------- aiohttp glue

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for both routes (webhooks and, with Bearer, the token)."""
        method, headers = request.method.upper(), _lower(request.headers)
        refusal = self.precheck(method, request.path, headers)
        if refusal is not None:
            self.refused += 1
            return _to_aiohttp(refusal)
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self.max_body:
                break  # the core answers 413; the rest is never read
        # Checked above already: authentication and the rest are not done twice.
        answer = self._answer(method, request.path, headers, bytes(body), prechecked=True)
        return _to_aiohttp(answer)

    def aiohttp_routes(self) -> list[web.RouteDef]:
        """Routes to add to an aiohttp application (``app.add_routes(...)``)."""
        routes = [web.route("*", f"{self.prefix}/{{signature_id}}", self.aiohttp_handler)]
        if isinstance(self.auth, BearerAuth):
            routes.insert(0, web.route("*", self.token_path, self.aiohttp_handler))
        return routes

    def aiohttp_app(self) -> web.Application:
        """A stand-alone aiohttp application serving only the webhook routes."""
        app = web.Application(client_max_size=self.max_body + 1)
        app.add_routes(self.aiohttp_routes())
        return app

    def __repr__(self) -> str:
        return f"WebhookReceiver(prefix={self.prefix!r}, auth={self.auth!r})"


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _not_allowed() -> WebhookResponse:
    return _problem(405, "method_not_allowed", "use POST", Allow="POST")


def _too_large(limit: int) -> WebhookResponse:
    return _problem(413, "payload_too_large", f"the body exceeds {limit} bytes")


def _errors(raw: Any) -> tuple[ErrorDetail, ...]:
    """The ``errors`` list, leniently: entries that are not objects are skipped."""
    if not isinstance(raw, list):
        return ()
    details = []
    for entry in raw:
        if isinstance(entry, dict):
            code = _lenient_code(entry.get("statusCode"))
            details.append(
                ErrorDetail(
                    code=_opt_str(entry.get("code")),
                    message=_opt_str(entry.get("message")),
                    field=_opt_str(entry.get("field")),
                    status_code=code,
                )
            )
    return tuple(details)


def _lenient_code(value: object) -> int | None:
    """An entry's status code; one that cannot be read is dropped (the entry is kept)."""
    try:
        return read_status_code(value)
    except ValueError:
        return None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _to_aiohttp(answer: WebhookResponse) -> web.Response:
    return web.Response(
        status=answer.status, body=answer.body or None, headers=dict(answer.headers)
    )
