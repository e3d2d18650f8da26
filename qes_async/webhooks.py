"""Receive Fourthline's QES webhooks and hand them to the waiters.

:class:`WebhookReceiver` has a framework-neutral core, :meth:`WebhookReceiver.serve`
(method, path, headers and the body as an async iterable of chunks in; a
:class:`WebhookResponse` out; :meth:`~WebhookReceiver.handle` takes a body read already),
plus ready aiohttp routes. It authenticates the call (:class:`BasicAuth` or
:class:`BearerAuth`, whose token endpoint it also serves), validates the body, publishes a
:class:`~qes_async.WebhookEvent` to a :class:`~qes_async.WebhookDispatcher` and answers at
once; the waiters re-read the status afterwards, as the service asks. Bad input gets the
right 4xx, never a 500.

Limits: the method, path and credentials are checked before any body byte is read (on the
token endpoint too); a body is at most ``max_body`` bytes (64 KiB; 4 KiB on the token
endpoint) and must arrive whole within ``body_timeout`` seconds (10 s; else 408); a
signature id has the client's id syntax (1 to 128 of ``A-Z a-z 0-9 . _ ~ -``, not ``.`` or
``..``) in both the decoded and the raw path (else 404); a status is at most 64 printable
characters (else 422); an ``errors`` list keeps at most 10 entries of bounded strings; JSON
nested deeper than 32 levels is 400. Refusals are counted in
:attr:`WebhookReceiver.refusals`; the first of each reason is logged at WARNING, the rest
at DEBUG::

    dispatcher = WebhookDispatcher()
    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", password))
    app.add_routes(receiver.aiohttp_routes())     # POST /fourthline/qes/{signatureId}
    waiter = HybridWaiter(client, dispatcher)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
from collections.abc import AsyncIterable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
from aiohttp import web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from ._client.validation import is_valid_id
from ._core.errors import InvalidInputError
from ._core.lenient import read_status_code
from ._core.models import ErrorDetail, Status, WebhookEvent
from ._runtime import telemetry as _telemetry
from ._runtime.clock import Clock, SystemClock
from ._waiting.dispatcher import _STATUSES, MAX_UNKNOWN_STATUSES, WebhookDispatcher
from ._webhooks.auth import AuthResult, BasicAuth, BearerAuth, TokenAnswer

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
#: Seconds a whole request body may take to arrive (else 408).
DEFAULT_BODY_TIMEOUT = 10.0
#: The token endpoint's largest body: a form holding ``grant_type=client_credentials``.
MAX_TOKEN_BODY = 4 * 1024
MAX_STATUS_LENGTH = 64
MAX_JSON_DEPTH = 32
#: An ``errors`` list keeps at most this many entries; their strings are cut to these sizes.
MAX_ERRORS = 10
MAX_ERROR_CODE = 64
MAX_ERROR_FIELD = 64
MAX_ERROR_MESSAGE = 256

_DECODER = json.JSONDecoder()  # what json.loads uses for a str
#: Its scanner (an attribute of the instance): one JSON value from an index, and its end.
_SCAN: Callable[[str, int], tuple[Any, int]] = vars(_DECODER)["scan_once"]
# The documented statuses by value (Status(value) for the rest), and how many undocumented
# ones a receiver remembers besides them: the dispatcher's own table and bound.


@attrs.frozen
class WebhookResponse:
    """What to answer: an HTTP status, headers and a (JSON or empty) body.

    ``reason`` names a refusal (the problem's ``error``, e.g. ``unauthorized``); empty on
    success.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = attrs.field(default=b"", repr=False)
    reason: str = ""


#: The answer to every accepted webhook (its headers cannot be changed by one caller for all).
_ACCEPTED = WebhookResponse(204, MappingProxyType({}))


def _json(status: int, data: Mapping[str, object], **headers: str) -> WebhookResponse:
    hdrs = {"Content-Type": "application/json", **headers}
    reason = str(data.get("error", "")) if status >= 300 else ""
    return WebhookResponse(status, hdrs, json.dumps(data).encode("utf-8"), reason)


def _problem(status: int, error: str, detail: str, **headers: str) -> WebhookResponse:
    return _json(status, {"error": error, "detail": detail}, **headers)


def _closing(answer: WebhookResponse) -> WebhookResponse:
    """``answer`` with ``Connection: close``: the rest of an unread body is not wanted."""
    return attrs.evolve(answer, headers={**answer.headers, "Connection": "close"})


class WebhookReceiver:
    """Authenticates, validates and dispatches Fourthline's webhooks.

    Args:
        dispatcher: where accepted events are published.
        auth: :class:`BasicAuth` or :class:`BearerAuth`.
        prefix: the path the signature id is appended to (``POST {prefix}/{signatureId}``).
        token_path: the Bearer token endpoint, the AuthUrl to configure at Fourthline
            (default ``{prefix}/oauth2/token``); served only with :class:`BearerAuth`.
        max_body: the largest accepted body in bytes; larger gets 413 (the token endpoint
            takes at most :data:`MAX_TOKEN_BODY`).
        body_timeout: seconds a whole body may take to arrive once the request was
            prechecked; slower gets 408 (:meth:`serve` and the aiohttp routes).
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
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(auth, (BasicAuth, BearerAuth)):
            raise InvalidInputError("auth", "give BasicAuth(...) or BearerAuth(...)")
        if max_body < 1:
            raise InvalidInputError("max_body", "must be >= 1 byte")
        if not (isinstance(body_timeout, (int, float)) and 0 < body_timeout < math.inf):
            raise InvalidInputError("body_timeout", "must be a finite number of seconds > 0")
        self.dispatcher = dispatcher
        self.auth = auth
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.token_path = token_path or f"{self.prefix}/oauth2/token"
        self.max_body = max_body
        self.body_timeout = float(body_timeout)
        self.clock: Clock = clock if clock is not None else dispatcher.clock
        if isinstance(auth, BearerAuth) and isinstance(auth.clock, SystemClock):
            auth.clock = self.clock
        self.accepted = 0
        self.refused = 0
        #: How many requests were refused, by reason (``unauthorized``, ``not_found``...).
        self.refusals: dict[str, int] = {}
        self._failed_before: set[type[BaseException]] = set()  # kinds logged with a traceback
        # Status by value: the documented ones, and the first undocumented ones seen (an
        # Enum call that ends in Status._missing_ costs three frames per webhook).
        self._statuses = dict(_STATUSES)

    # ------------------------------------------------------------------ the neutral core

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        raw_path: str | None = None,
    ) -> WebhookResponse:
        """Answer one HTTP request whose body was read already (never raises for any input).

        An adapter that reads the body itself must first call :meth:`precheck` and bound
        the read in size and time; :meth:`serve` does all of that.

        Args:
            method: the HTTP method.
            path: the (percent-decoded) request path, without query string.
            headers: the request headers (any case).
            body: the raw body; pass at most ``max_body + 1`` bytes of a larger one.
            raw_path: the path as sent, still percent-encoded; when given, the signature
                id must read the same in it.
        """
        return self._answer(_headers(headers), body, None, method.upper(), path, raw_path)

    async def serve(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
        *,
        raw_path: str | None = None,
    ) -> WebhookResponse:
        """Answer one HTTP request, reading its body from ``body`` only once the method,
        path and credentials passed, at most the route's size limit of it and within
        :attr:`body_timeout` seconds in all (else 413 or 408). For any framework's adapter.

        ``body`` may be aiohttp's ``request.content``: a body that came whole with the
        request's head is taken from its buffer, with no timer armed for it.
        """
        return await self._serve(method.upper(), path, _headers(headers), raw_path, body)

    async def _serve(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw_path: str | None,
        body: AsyncIterable[bytes],
    ) -> WebhookResponse:
        """:meth:`serve` and :meth:`aiohttp_handler` alike, on an upper-cased method and the
        headers :func:`_headers` keeps: precheck, the bounded read, the answer."""
        route = self._precheck(method, path, headers, raw_path)
        if isinstance(route, WebhookResponse):
            return self._count(_closing(route))
        limit = self._limit(route)
        read: bytes | WebhookResponse
        if not isinstance(body, StreamReader):
            read = await self._read(limit, body)
        elif body.is_eof():
            # The whole body came with the head, as a webhook's few hundred bytes do: it is
            # in memory already, so nothing waits and no timer is armed for it.
            whole = body.read_nowait()
            read = whole if len(whole) <= limit else _too_large(limit)
        else:
            read = await self._read(limit, body.iter_any())
        if isinstance(read, WebhookResponse):
            return self._count(_closing(read))
        # Checked above already: authentication and the rest are not done twice.
        return self._answer(headers, read, route)

    async def _read(self, limit: int, chunks: AsyncIterable[bytes]) -> bytes | WebhookResponse:
        body = bytearray()

        async def collect() -> bool:
            async for chunk in chunks:
                body.extend(chunk)
                if len(body) > limit:
                    return False  # the rest is never read
            return True

        try:
            if sys.version_info >= (3, 11):
                # A deadline on this task: no task of its own per request, as wait_for makes.
                async with asyncio.timeout(self.body_timeout):
                    whole = await collect()
            else:  # pragma: no cover - Python 3.10
                whole = await asyncio.wait_for(collect(), self.body_timeout)
        except asyncio.TimeoutError:
            detail = f"the body did not arrive within {self.body_timeout:g} s"
            return _problem(408, "body_timeout", detail)
        return bytes(body) if whole else _too_large(limit)

    def _answer(
        self,
        headers: dict[str, str],
        body: bytes,
        route: str | None,
        method: str = "",
        path: str = "",
        raw_path: str | None = None,
    ) -> WebhookResponse:
        """Answer, counted; ``route`` is what :meth:`_precheck` found, for a body read
        within the route's limit (None: check the request and the body's size first, from
        ``method``, ``path`` and ``raw_path``)."""
        try:
            response = self._dispatch(headers, body, route, method, path, raw_path)
        except Exception as exc:  # a bug must not become a 500 loop of retries
            # The traceback once per kind of failure: a caller who found a bug must not
            # flood the log with it, and a second, different bug still shows at ERROR.
            kind = type(exc)
            level = logging.DEBUG if kind in self._failed_before else logging.ERROR
            if len(self._failed_before) < 64:
                self._failed_before.add(kind)
            log.log(level, "webhook handling failed unexpectedly", exc_info=True)
            response = _problem(400, "bad_request", "the webhook could not be processed")
        if response is _ACCEPTED and _telemetry.hook is None:
            self.accepted += 1  # all that _count does for it then
            return response
        return self._count(response)

    def _count(self, response: WebhookResponse) -> WebhookResponse:
        tel = _telemetry.hook  # None unless qes_async.otel.instrument() ran
        if tel is not None:
            tel.webhook(response.status, response.reason or f"http_{response.status}")
        if response.status < 300:
            self.accepted += 1
            return response
        self.refused += 1
        reason = response.reason or f"http_{response.status}"
        seen = self.refusals.get(reason, 0)
        self.refusals[reason] = seen + 1
        if seen:
            log.debug("webhook refused (%s, HTTP %d)", reason, response.status)
        else:
            log.warning(
                "webhook refused (%s, HTTP %d); further refusals for this reason are logged"
                " at DEBUG and counted in WebhookReceiver.refusals",
                reason,
                response.status,
            )
        return response

    def precheck(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        raw_path: str | None = None,
    ) -> WebhookResponse | None:
        """The refusal decided by method, path, headers alone (before reading a body).

        None means: read the body (bounded) and pass it to :meth:`handle`. A refusal here
        is not counted in :attr:`refusals` (:meth:`serve` and :meth:`handle` count).
        """
        route = self._precheck(method.upper(), path, _headers(headers), raw_path)
        return route if isinstance(route, WebhookResponse) else None

    def _precheck(
        self, method: str, path: str, headers: dict[str, str], raw_path: str | None
    ) -> WebhookResponse | str:
        """:meth:`precheck` on an upper-cased method and lower-cased headers; instead of
        None, the route: the signature id, or ``""`` for the token endpoint (an id is
        never empty)."""
        if path == self.token_path and isinstance(self.auth, BearerAuth):
            if method != "POST":
                return _not_allowed()
            refused = self.auth.check_client(headers)
            if refused is not None:
                return _from_token_answer(refused)
            too_large = self._declared_too_large(headers, min(self.max_body, MAX_TOKEN_BODY))
            return "" if too_large is None else too_large
        signature_id = self._signature_id(path, raw_path)
        if signature_id is None:
            return _problem(404, "not_found", "no webhook route here")
        if method != "POST":
            return _not_allowed()
        result = self.auth.check(headers)
        if not result.ok:
            return self._refuse_credentials(result)
        declared = headers.get("content-length")
        # A plain number within the limit is the usual case; anything else is read in full.
        if declared is not None and not (declared.isdigit() and int(declared) <= self.max_body):
            too_large = self._declared_too_large(headers, self.max_body)
            if too_large is not None:
                return too_large
        media = headers.get("content-type", "")
        if media != "application/json":  # what Fourthline sends; else the full reading
            media = media.split(";", 1)[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return _problem(415, "unsupported_media_type", "send application/json")
        return signature_id

    def _limit(self, route: str) -> int:
        """The largest body the route (a signature id, or ``""``: the token endpoint) takes."""
        return self.max_body if route else min(self.max_body, MAX_TOKEN_BODY)

    @staticmethod
    def _declared_too_large(headers: dict[str, str], limit: int) -> WebhookResponse | None:
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        return None

    def _dispatch(
        self,
        headers: dict[str, str],
        body: bytes,
        route: str | None,
        method: str,
        path: str,
        raw_path: str | None,
    ) -> WebhookResponse:
        if route is None:  # from handle: the request and its body's size are unchecked
            checked = self._precheck(method, path, headers, raw_path)
            if isinstance(checked, WebhookResponse):
                return checked
            route = checked
            limit = self._limit(route)
            if len(body) > limit:
                return _too_large(limit)
        if not route:
            assert isinstance(self.auth, BearerAuth)  # only then is there a token route
            return _from_token_answer(self.auth.grant(headers, body))
        event = self._parse(route, body)
        if isinstance(event, WebhookResponse):
            return event
        self.dispatcher.publish(event)
        if log.isEnabledFor(logging.INFO):  # else the status' value is not even looked up
            log.info("webhook for %s: status %s", route, event.status.value)
        return _ACCEPTED

    def _refuse_credentials(self, result: AuthResult) -> WebhookResponse:
        return _problem(
            401,
            "unauthorized",
            "missing or wrong credentials",
            **{"WWW-Authenticate": result.challenge},
        )

    def _signature_id(self, path: str, raw_path: str | None = None) -> str | None:
        """The id in ``path`` if it has the client's id syntax (and reads the same in
        ``raw_path``, when given); None otherwise."""
        head = self.prefix + "/"
        if not path.startswith(head):
            return None
        signature_id = path[len(head) :]
        if not is_valid_id(signature_id):
            return None
        if raw_path is not None and (raw_path != path or "?" in path):
            # (A raw path that is the decoded one has the same last segment.)
            raw = raw_path.split("?", 1)[0].rpartition("/")[2]
            if raw != signature_id:  # e.g. "%2e%2e" or "%00": decoded, it could pass
                return None
        return signature_id

    def _parse(self, signature_id: str, body: bytes) -> WebhookEvent | WebhookResponse:
        """The body as an event, or the 400/422 that refuses it."""
        try:
            data = _json_value(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _problem(400, "malformed_json", "the body is not valid UTF-8 JSON")
        except RecursionError:
            return _too_deep()
        # Nothing nests deeper than the body has brackets (counted in strings too, so a
        # body that might is walked in full).
        brackets = body.count(b"{") + body.count(b"[")
        if brackets > MAX_JSON_DEPTH and _too_nested(data, MAX_JSON_DEPTH):
            return _too_deep()
        if not isinstance(data, dict):
            return _problem(400, "malformed_json", "the body must be a JSON object")
        body_id = data.get("signatureId", signature_id)
        if body_id != signature_id:
            return _problem(422, "signature_id_mismatch", "signatureId differs from the path")
        status = data.get("status")
        # A status remembered was checked when it was first seen (or is documented).
        member = self._statuses.get(status) if isinstance(status, str) else None
        if member is None:
            member = self._new_status(status)
            if member is None:
                return _problem(
                    422,
                    "invalid_status",
                    f"status must be a string of 1 to {MAX_STATUS_LENGTH} printable characters",
                )
        code = data.get("statusCode")
        if code is not None and type(code) is not int:  # else read as it is (not a bool)
            try:
                code = read_status_code(code)
            except ValueError:
                return _problem(
                    422,
                    "invalid_status_code",
                    "statusCode must be an integer, a numeric string or null",
                )
        errors = data.get("errors")
        # Positional (signature_id, status, status_code, errors, received_at): cheaper.
        return WebhookEvent(
            signature_id,
            member,
            code,
            () if errors is None else _errors(errors),
            self.clock.time(),
        )

    def _new_status(self, status: object) -> Status | None:
        """``status`` as a :class:`Status` if it is a string of 1 to
        :data:`MAX_STATUS_LENGTH` printable characters, else None; remembered while the
        receiver knows fewer than :data:`MAX_UNKNOWN_STATUSES` undocumented ones."""
        if (
            not isinstance(status, str)
            or not 0 < len(status) <= MAX_STATUS_LENGTH
            or not status.isprintable()
        ):
            return None
        member = Status(status)
        if len(self._statuses) < len(_STATUSES) + MAX_UNKNOWN_STATUSES:
            self._statuses[status] = member
        return member

    # ---------------------------------------------------------------------- aiohttp glue

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler for both routes (webhooks and, with Bearer, the token):
        :meth:`serve`, reading the body straight from aiohttp's buffer."""
        headers = _headers(request.headers)
        answer = await self._serve(
            request.method.upper(), request.path, headers, request.raw_path, request.content
        )
        if answer is _ACCEPTED:  # what _to_aiohttp makes of it
            return web.Response(status=204)
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


#: The only request headers the receiver reads (the credentials, the body's size and type).
_READ_HEADERS = ("authorization", "content-length", "content-type")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers by lower-cased name, the last of each name winning: what the
    receiver reads of them (:data:`_READ_HEADERS`, all it ever looks up).

    aiohttp's case-insensitive multidict is asked for those few names only; any other
    mapping has every name lowered (:func:`_lower`)."""
    if type(headers) is CIMultiDictProxy or type(headers) is CIMultiDict:
        kept: dict[str, str] = {}
        for name in _READ_HEADERS:
            values = headers.getall(name, None)
            if values is not None:
                kept[name] = str(values[-1])
        return kept
    return _lower(headers)


def _not_allowed() -> WebhookResponse:
    return _problem(405, "method_not_allowed", "use POST", Allow="POST")


def _too_large(limit: int) -> WebhookResponse:
    return _problem(413, "payload_too_large", f"the body exceeds {limit} bytes")


def _errors(raw: Any) -> tuple[ErrorDetail, ...]:
    """The ``errors`` list, leniently: entries that are not objects are skipped, at most
    :data:`MAX_ERRORS` are kept, and their strings are bounded (see :func:`_kept`)."""
    if not isinstance(raw, list):
        return ()
    details: list[ErrorDetail] = []
    for entry in raw:
        if len(details) >= MAX_ERRORS:
            break
        if isinstance(entry, dict):
            code = _lenient_code(entry.get("statusCode"))
            details.append(
                ErrorDetail(
                    code=_kept(entry.get("code"), MAX_ERROR_CODE),
                    message=_kept(entry.get("message"), MAX_ERROR_MESSAGE),
                    field=_kept(entry.get("field"), MAX_ERROR_FIELD),
                    status_code=code,
                )
            )
    return tuple(details)


def _kept(value: object, limit: int) -> str | None:
    """A string as kept: cut to ``limit`` characters, each unprintable one (a control
    character, NUL, a lone surrogate, a bidirectional override) replaced by U+FFFD."""
    if not isinstance(value, str):
        return None
    value = value[:limit]
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in value)


def _json_value(text: str) -> Any:
    """``json.loads(text)``. A body with no whitespace around its value (as JSON encoders
    write it) is one scanner call; any other text goes through the decoder, whose value or
    error it is."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # leading whitespace, or no JSON value at all
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


def _too_nested(data: object, limit: int) -> bool:
    """True when ``data`` nests lists/objects deeper than ``limit`` (iterative, no recursion)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep() -> WebhookResponse:
    return _problem(400, "json_too_deep", f"JSON nests deeper than {MAX_JSON_DEPTH} levels")


def _from_token_answer(answer: TokenAnswer) -> WebhookResponse:
    return _json(answer.status, answer.body, **answer.headers)


def _lenient_code(value: object) -> int | None:
    """An entry's status code; one that cannot be read is dropped (the entry is kept)."""
    try:
        return read_status_code(value)
    except ValueError:
        return None


def _to_aiohttp(answer: WebhookResponse) -> web.Response:
    if not answer.headers:  # an accepted webhook's 204
        return web.Response(status=answer.status, body=answer.body or None)
    response = web.Response(
        status=answer.status, body=answer.body or None, headers=dict(answer.headers)
    )
    if answer.headers.get("Connection") == "close":
        response.force_close()  # the unread rest of the body must not be taken as a request
    return response
