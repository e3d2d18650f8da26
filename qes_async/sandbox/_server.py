"""``SandboxServer``: the service on loopback, as an async context manager.

The middleware gives every response an ``X-Request-Id``, applies injected faults, turns
refusals into the contract's error body, and writes the request log. An unexpected
exception becomes a 500 ``internal_error`` and is logged: that is a sandbox bug, and the
tests assert it never happens. A 405 keeps aiohttp's ``Allow`` header (the path's methods).

Malformed HTTP (a bad request line or header, an invalid ``Content-Length``, broken
chunked framing) never reaches the middleware: aiohttp's protocol answers it with a
plain-text 400 from ``RequestHandler.handle_error``, and aiohttp offers no hook for that
answer. :class:`_Protocol` overrides only that method so it too is the contract's JSON
error body (``bad_request``) with an ``X-Request-Id``; the parser's own message is not
echoed, since it may quote the request's bytes (a header holding a token). Framing that
breaks after the headers were read (chunked garbage) fails the body the handler is reading
(aiohttp's C parser would leave it waiting for good), which the middleware answers with
the same 400 and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from .._client.routes import Routes
from .._runtime.clock import Clock, FakeClock, SystemClock
from ._api import CURRENT_CALL, OPERATIONS, ApiHandlers, CallState
from ._control import CONTROL_PREFIX, ControlHandlers
from ._faults import HTTP_FAULTS, Fault, FaultPlan
from ._model import ApiRefusal, IdentityCase, RequestRecord, SandboxTiming, Signature, SmsRecord
from ._signing import MissingExtraError, sandbox_ca
from ._state import QESService
from ._webhooks import WebhookConfig, WebhookDelivery, WebhookSender

__all__ = ["SandboxServer"]

log = logging.getLogger("qes_async.sandbox")
MAX_BODY = 25 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Dropped(Exception):
    """The connection was closed on purpose (a ``drop_*`` fault)."""


class SandboxServer:
    """A stateful stand-in for the QES service, on 127.0.0.1.

    Args:
        clock: the service's time (default :class:`SystemClock`); share a
            :class:`FakeClock` with the code under test to run hours in milliseconds.
        host: the address to listen on.
        port: the port to listen on (0: an ephemeral port).
        client_id: the accepted API client id (random by default).
        client_secret: the accepted API client secret (random by default).
        timing: every duration (see :class:`SandboxTiming`).
        processing_delay: shortcut for ``timing.processing_delay``.
        seed: makes ids, passcodes and fault draws reproducible.
        routes: path overrides (as for the client).
        clients: identity cases to register, by client reference.
        webhook_url: see :meth:`configure_webhooks`.
        webhook_basic: see :meth:`configure_webhooks`.
        webhook_bearer: see :meth:`configure_webhooks`.
        webhook_backoff: the first redelivery delay, in clock seconds.
        webhook_timeout: real seconds the receiver may take to accept a delivery's
            connection, and between reads of its answer (a slower one fails and is
            redelivered); a delivery queued behind others is not timed.
        string_status_codes: send ``statusCode`` as a numeric string (``"1036"``) in
            status answers and webhooks, as some integrations of the service do.
        workflow_names: the ``workflowName`` values accepted (exactly, case kept).

    ``routes`` makes the sandbox serve another route layout: every operation answers under
    its path there; a path it does not serve answers 404 ``not_found`` (an unknown id on a
    served path answers 404 ``signature_not_found``), which is what ``qes-async doctor`` is
    tested against.

    Use ``async with SandboxServer(...) as sandbox:``; ``sandbox.url`` is then set.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str | None = None,
        client_secret: str | None = None,
        timing: SandboxTiming | None = None,
        processing_delay: float | None = None,
        seed: int | None = None,
        routes: Routes | Mapping[str, str] | None = None,
        clients: Mapping[str, IdentityCase] | None = None,
        webhook_url: str | None = None,
        webhook_basic: tuple[str, str] | None = None,
        webhook_bearer: tuple[str, str, str] | None = None,
        webhook_backoff: float = 1.0,
        webhook_timeout: float = 5.0,
        string_status_codes: bool = False,
        workflow_names: tuple[str, ...] = ("qes",),
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.host, self._port = host, port
        self.client_id = client_id or f"sandbox-{uuid.uuid4().hex[:12]}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        timing = timing or SandboxTiming()
        if processing_delay is not None:
            timing = SandboxTiming(**{**_fields(timing), "processing_delay": processing_delay})
        self.routes = Routes.coerce(dict(routes) if isinstance(routes, Mapping) else routes)
        self.service = QESService(
            self.clock,
            client_id=self.client_id,
            client_secret=self.client_secret,
            timing=timing,
            seed=seed,
        )
        self.faults = FaultPlan(HTTP_FAULTS, seed)
        self.webhooks = WebhookSender(
            self.clock, seed=seed, backoff=webhook_backoff, timeout=webhook_timeout
        )
        self.service.status_listeners.append(self._on_status)
        self.service.string_status_codes = string_status_codes
        self.service.workflow_names = tuple(workflow_names)
        for reference, case in (clients or {}).items():
            self.add_client(reference, case)
        if webhook_url is not None:
            self.configure_webhooks(webhook_url, basic=webhook_basic, bearer=webhook_bearer)
        self.request_log: list[RequestRecord] = []
        self._api = ApiHandlers(self.service)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (API routes, control routes, middleware)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        self._api.add_routes(app, self.routes)
        ControlHandlers(self).add_routes(app)
        return app

    async def start(self) -> None:
        """Start serving; sets :attr:`url`."""
        _prepare_signing()
        self._runner = _Runner(self.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self._port
        self.url = f"http://{self.host}:{port}"
        log.info("sandbox serving on %s", self.url)

    async def close(self) -> None:
        """Stop serving, cancel webhook deliveries, wait for signing threads."""
        await self.webhooks.close()
        await self._api.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what tests read and set ------------------------------------------------------

    @property
    def sms_outbox(self) -> list[SmsRecord]:
        """Every passcode SMS sent, oldest first."""
        return self.service.sms_outbox

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every webhook delivery attempt (and fault), oldest first."""
        return self.webhooks.deliveries

    @property
    def webhook_faults(self) -> FaultPlan:
        """The fault plan of webhooks (``drop``, ``duplicate``, ``delay``, ``reorder``)."""
        return self.webhooks.faults

    @property
    def ca_pem(self) -> bytes:
        """The PEM certificate of the CA that signs the sandbox's documents.

        Give it to PAdES validation as a trust root (``trust_roots=[sandbox.ca_pem]``) so
        signed documents validate as ``valid`` rather than ``untrusted``. The CA is made
        once per process: every sandbox of a process shares it, and a restarted
        standalone sandbox has a new one. ``GET /_sandbox/ca.pem`` serves the same bytes.

        Raises:
            MissingExtraError: the ``sandbox`` extra (cryptography) is not installed.
        """
        return sandbox_ca().certificate_pem

    @property
    def ca_der(self) -> bytes:
        """The same CA certificate as :attr:`ca_pem`, DER-encoded."""
        return sandbox_ca().certificate_der

    def latest_passcode(self, signature_id: str) -> str:
        """The last passcode sent for a signature; ``LookupError`` if none was sent."""
        for record in reversed(self.sms_outbox):
            if record.signature_id == signature_id:
                return record.passcode
        raise LookupError(f"no passcode was sent for signature {signature_id}")

    def signature(self, signature_id: str) -> Signature:
        """The service's record of a signature (``KeyError`` if unknown)."""
        return self.service.signatures[signature_id]

    def add_client(self, client_reference: str, case: IdentityCase | None = None) -> None:
        """Register the identity case used by workflows for this client reference."""
        self.service.add_client(client_reference, case or IdentityCase())

    def configure_webhooks(
        self,
        url: str | None,
        *,
        basic: tuple[str, str] | None = None,
        bearer: tuple[str, str, str] | None = None,
    ) -> None:
        """Deliver status changes to ``{url}/{signatureId}`` (``None`` turns them off).

        ``basic=(user, password)`` sends HTTP Basic; ``bearer=(auth_url, user, password)``
        first fetches a token from ``auth_url`` with those credentials.
        """
        config = None if url is None else WebhookConfig(url, basic, bearer)
        self.webhooks.configure(config)

    def inject_fault(self, kind: str, *, route: str | None = None, **options: Any) -> None:
        """Add a fault rule (see :class:`FaultPlan.add`); ``route`` is an operation name."""
        self._check_route(route)
        self.faults.add(kind, route=route, **options)

    def script_faults(self, steps: list[str | Fault | None], *, route: str | None = None) -> None:
        """Hit the next calls with these faults in order (``"ok"`` for none)."""
        self._check_route(route)
        self.faults.script(steps, route=route)

    def revoke_tokens(self) -> None:
        """Revoke every token issued so far (the next call gets 401)."""
        self.service.revoke_token()

    def advance(self, seconds: float) -> None:
        """Move a :class:`FakeClock` forward (firing deadlines); refused on a real clock."""
        if not isinstance(self.clock, FakeClock):
            raise TypeError("only a FakeClock can be advanced")
        self.clock.advance(seconds)

    @staticmethod
    def _check_route(route: str | None) -> None:
        if route is not None and route not in OPERATIONS:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(OPERATIONS)}")

    def _on_status(self, sig: Signature) -> None:
        self.webhooks.notify(sig.status_body(self.service.string_status_codes))

    # -- middleware ---------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        route = request.match_info.route.name
        if route not in OPERATIONS:
            route = None
        # A planted call reaches the service as sent, and draws no fault: the faulted run
        # beside it keeps its scripted steps and its seeded sequence.
        planted = request.headers.get("X-Sandbox-Faults", "").lower() == "off"
        fault = self.faults.pick(route) if route and not planted else None
        state = CallState(fault.kind if fault else None)
        CURRENT_CALL.set(state)
        try:
            response = await self._handle(request, handler, fault)
        except _Dropped:
            self._log(request, route, 0, fault, state)
            raise asyncio.CancelledError from None
        response.headers["X-Request-Id"] = request_id
        if not request.path.startswith(CONTROL_PREFIX):
            self._log(request, route, response.status, fault, state, request_id)
        return response

    async def _handle(
        self, request: web.Request, handler: Handler, fault: Fault | None
    ) -> web.StreamResponse:
        try:
            if fault is not None:
                early = await self._apply_fault_before(request, fault)
                if early is not None:
                    return early
            response = await handler(request)
            if fault is not None and fault.kind == "drop_after":
                self._drop(request)
            if fault is not None and fault.kind == "slow_answer":
                await asyncio.sleep(fault.delay)  # processed: only the answer is late
            return response
        except ApiRefusal as exc:
            return _error_response(exc)
        except web.HTTPException as exc:
            return _error_response(_from_http_exception(exc))
        except (web.RequestPayloadError, HttpProcessingError):
            # The framing broke after the headers (the C parser's error, set by _Protocol,
            # or the pure-Python parser's own): the connection cannot carry more.
            response = _error_response(ApiRefusal(400, "bad_request", MALFORMED))
            response.force_close()
            return response
        except (_Dropped, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("sandbox bug while handling %s %s", request.method, request.path)
            return _error_response(ApiRefusal(500, "internal_error", "unexpected sandbox error"))

    async def _apply_fault_before(
        self, request: web.Request, fault: Fault
    ) -> web.StreamResponse | None:
        if fault.kind == "server_error":
            raise ApiRefusal(fault.status, "server_error", "injected server error")
        if fault.kind == "rate_limit":
            raise ApiRefusal(
                429,
                "rate_limited",
                "too many requests; retry later",
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault.kind == "drop_before":
            self._drop(request)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        if fault.kind == "revoke_token":
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            if token.strip():  # only the presented one: None would revoke every token
                self.service.revoke_token(token.strip())
        return None

    @staticmethod
    def _drop(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise _Dropped

    def _log(
        self,
        request: web.Request,
        route: str | None,
        status: int,
        fault: Fault | None,
        state: CallState,
        request_id: str = "",
    ) -> None:
        signature_id = request.match_info.get("id") or state.signature_id
        record = RequestRecord(
            method=request.method,
            route=route,
            path=request.path,
            status=status,
            time=self.clock.time(),
            signature_id=signature_id,
            processed=state.processed,
            fault=fault.kind if fault else None,
            request_id=request_id,
            client_reference=state.client_reference,
        )
        self.request_log.append(record)
        log.debug("%s %s -> %s (%s)", request.method, request.path, status, record.fault)


def _prepare_signing() -> None:
    """Make the signing CA before the first request (a no-op without the sandbox extra)."""
    with contextlib.suppress(MissingExtraError):  # downloads then say which extra to install
        sandbox_ca()


def _fields(timing: SandboxTiming) -> dict[str, Any]:
    import attrs

    return attrs.asdict(timing)


def _error_response(exc: ApiRefusal) -> web.Response:
    response = web.json_response(exc.body(), status=exc.status)
    response.headers.update(exc.headers)
    return response


def _from_http_exception(exc: web.HTTPException) -> ApiRefusal:
    """The contract's error for aiohttp's own refusals; a 405 keeps its ``Allow``."""
    codes = {
        404: ("not_found", "no such path"),
        405: ("method_not_allowed", "this path does not accept this method"),
        413: ("payload_too_large", "the request body is too large"),
    }
    code, message = codes.get(exc.status, ("bad_request", exc.reason or "bad request"))
    status = exc.status if 400 <= exc.status < 500 else 400
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    return ApiRefusal(status, code, message, headers=headers)


MALFORMED = "the request is not valid HTTP/1.1 (request line, headers or body framing)"


class _Protocol(RequestHandler):
    """aiohttp's connection protocol, with the contract's JSON body on its own errors.

    aiohttp calls :meth:`handle_error` for what fails before (or outside) the application:
    a parse error (400), and a handler's escaping exception or timeout (500, 504).
    """

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) <= queued or not isinstance(self._messages[-1][0], _ErrInfo):
            return
        # The parser failed inside a body already handed out (the C parser does not fail
        # that body itself): fail it, so its handler answers instead of waiting for good.
        bodies = [payload for _, payload in list(self._messages)[:-1]]
        if self._current_request is not None:
            bodies.append(self._current_request.content)
        for body in bodies:
            if not body.is_eof():
                body.set_exception(web.RequestPayloadError("the body's framing is broken"))

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is under way: aiohttp's own path
            return super().handle_error(request, status, exc, message)
        log.debug("malformed request from %s: %s", request.remote, type(exc).__name__)
        if 400 <= status < 500:
            error = ApiRefusal(status, "bad_request", MALFORMED)
        else:
            error = ApiRefusal(status, "internal_error", "unexpected sandbox error")
        response = _error_response(error)
        response.headers["X-Request-Id"] = uuid.uuid4().hex
        response.force_close()
        return response


class _Server(web.Server):
    """Makes :class:`_Protocol` connections (``web.Server`` hard-codes its class)."""

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An ``AppRunner`` whose server is a :class:`_Server`, otherwise the same."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
