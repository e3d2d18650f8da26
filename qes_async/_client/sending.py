"""The retry and re-auth loop: send a :class:`Request` over any transport, retry by the pure
policy, return bytes.

Everything that decides lives elsewhere: what to send (``protocol``), whether to retry
(``retry``), how the token is cached (``auth``); the bytes move through a
:class:`~qes_async.Transport` (the aiohttp adapter by default). This module builds each
attempt, sleeps through the injected ``sleep``, logs one line per attempt and turns the
transport's failures into the SDK's own errors. It knows no HTTP library.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from yarl import URL

from .._core.errors import DecodeError, OutcomeUnknownError, RequestNotSentError
from .._core.redact import Scrubber
from .._runtime import telemetry as _telemetry
from .._runtime.clock import Clock, SystemClock
from .._runtime.logs import log_attempt, logger
from .auth import TokenCache
from .protocol import JSON_HEADERS, Request, Response, error_from_response, request_id_of
from .retry import Decision, Failure, RetryPolicy, Verdict, decide, parse_retry_after
from .routes import Routes
from .transport import (
    SmallAnswer,
    Timeouts,
    Transport,
    TransportError,
    TransportRequest,
    TransportResponse,
)

__all__ = ["Consumer", "Sender"]

T = TypeVar("T")
Consumer = Callable[[TransportResponse], Awaitable[T]]
Fetch = Callable[[TransportRequest, int], Awaitable["SmallAnswer | TransportResponse"]]

MAX_REAUTHS = 3  # tokens one call may find dead (each a different one) before giving up
MAX_401S = 12  # 401s one call takes in all, counting tokens others had already replaced


class _Failed(Exception):
    def __init__(self, failure: Failure, cause: BaseException) -> None:
        self.failure = failure
        self.cause = cause


class Sender:
    """Sends requests over a transport with retries, authentication and logging."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: Transport,
        retry: RetryPolicy,
        timeouts: Timeouts,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        owns_transport: bool = True,
    ) -> None:
        self.base_url = URL(base_url.rstrip("/"))
        self._base = str(self.base_url)  # paths from Routes are already quoted
        self.transport = transport
        # The transport's one-step send and read when it has one, else its send (whose open
        # answer the client reads itself): looked up once, not per call.
        self._fetch: Fetch = getattr(transport, "fetch", None) or _sender_of(transport)
        self._bearer: Mapping[str, str] = {}  # the shared headers of the token below
        self._bearer_token: Any = None
        self._owns_transport = owns_transport
        self.scrubber = Scrubber()  # the client's literal secrets, cut from error excerpts
        self.answered = False  # whether the server ever answered in HTTP (for advice)
        self.retry = retry
        self.timeouts = timeouts
        self.clock = clock
        # The real clock's time is time.time: called directly, one call less per call.
        self._now = time.time if type(clock) is SystemClock else clock.time
        self.sleep = sleep
        self.auth: TokenCache | None = None
        #: The client's route table: telemetry names each attempt's path template from it.
        self.routes: Routes | None = None
        self.closed = False

    async def aclose(self) -> None:
        """Refuse further calls and close the transport if the client made it."""
        self.closed = True
        if self._owns_transport:
            await self.transport.aclose()

    def forget_paths(self, paths: Iterable[str]) -> None:
        """Drop what the transport caches for ``paths`` (a finished signature's)."""
        forget = getattr(self.transport, "forget_urls", None)
        if forget is not None:
            forget([self._base + path for path in paths])

    async def send(self, request: Request) -> Response:
        """Send with retries; a 2xx answer read whole, else the typed error.

        Raises:
            ServiceError: (a subclass) the service answered no.
            RequestNotSentError: nothing reached the service, retries spent.
            OutcomeUnknownError: an unsafe call may have been processed (never replayed),
                or a safe one kept getting no answer.
        """
        status, head, body, _ = await self.call(request)
        return Response(status, head, body, self.scrubber)

    async def exchange(
        self, request: Request, consume: Consumer[Any] | None
    ) -> tuple[Response, Any]:
        """:meth:`call`, its answer as a :class:`Response` beside what ``consume`` made."""
        status, head, body, result = await self.call(request, consume)
        return Response(status, head, body, self.scrubber), result

    async def call(
        self, request: Request, consume: Consumer[Any] | None = None
    ) -> tuple[int, Mapping[str, str], bytes, Any]:
        """Send with retries; a 2xx answer goes open to ``consume`` (re-run per attempt) when
        one is given, else it is read whole. Returns the answer's status, headers and body
        (empty when consumed) and what ``consume`` made.

        The hot path: :meth:`send` and :meth:`exchange` wrap it, hot calls use it directly,
        since every coroutine layer is crossed again at each suspension. An ordinary
        attempt is one await of the transport (its ``fetch`` when it has one), with no
        object for the answer; retry state is only made once something failed.
        """
        started = self._now()
        retries: _Retries | None = None
        # None unless qes_async.otel.instrument() ran: then this one test is all it costs.
        tel = _telemetry.hook
        while True:
            token = None
            if request.authenticated and self.auth is not None:
                now = started if retries is None else self._now()
                token = self.auth.current(now) or await self.auth.get()
            debug = logger.isEnabledFor(logging.DEBUG)
            began = time.perf_counter() if debug else 0.0
            attempt = (retries.attempts if retries else 0) + 1
            result = None
            try:
                if tel is None and consume is None:  # the ordinary call, in one await
                    if self.closed:
                        raise RuntimeError(_CLOSED)
                    try:
                        # The headers (the bearer token) and body (the client secret, a
                        # passcode) are built in the call, never held in a local of this
                        # frame: error trackers record the locals of every frame.
                        got = await self._fetch(self._wire(request, token), MAX_ANSWER_BYTES)
                    except TransportError as exc:
                        raise _failed(exc) from exc
                    self.answered = True
                    if not isinstance(got, tuple):  # not small, or not known to be
                        got = await _read(got, request.operation)
                    status, head, body = got
                else:  # a consumer, or the attempt in its span (the coroutine holds the token)
                    call = self._attempt(request, token, consume)
                    if tel is not None:
                        call = tel.attempt(self, request, attempt, call)
                    response, result = await call
                    status, head, body = response.status, response.headers, response.body
            except _Failed as failed:
                retries = retries or _Retries(self.retry.waits())
                if debug:
                    self._log(request, attempt, began, error=type(failed.cause).__name__)
                retrying = self._after_failure(request, failed, retries, started)
                if await (retrying if tel is None else tel.decide(retrying, retries)):
                    continue
                raise self._give_up(request, failed) from _root(failed.cause)
            if debug:
                self._log(request, attempt, began, status=status, headers=head)
            if 200 <= status < 300:
                return status, head, body, result
            response = Response(status, head, body, self.scrubber)
            retries = retries or _Retries(self.retry.waits())
            retrying = self._after_answer(request, response, token, retries, started)
            if not await (retrying if tel is None else tel.decide(retrying, retries)):
                raise _refusal(request, response, retries)

    async def _after_failure(
        self, request: Request, failed: _Failed, retries: _Retries, started: float
    ) -> bool:
        """No answer came: retry (True) when it is safe and the policy allows."""
        retries.attempts += 1
        decision = decide(
            idempotent=request.idempotent,
            attempt=retries.attempts - len(retries.refused),  # 401s cost no budget
            policy=self.retry,
            failure=failed.failure,
        )
        retries.verdict = decision.verdict
        return await self._wait(decision, retries.waits, started)

    async def _after_answer(
        self, request: Request, response: Response, token: Any, retries: _Retries, started: float
    ) -> bool:
        """An error answer: refresh the token, wait and retry (True), or give up (False).

        A 401 costs no retry budget: it refreshes the token and tries again. A token that was
        refused once is never tried twice (that means bad credentials). A call may find its
        token dead at most MAX_REAUTHS times; a 401 on a token another call had already
        replaced does not count (one revocation of the shared token reaches every call in
        flight, and only the first to see it refreshes), up to MAX_401S in all.
        """
        retries.attempts += 1
        retry_after = parse_retry_after(response.headers.get("retry-after"), self.clock.time())
        retries.retry_after = retry_after
        decision = decide(
            idempotent=request.idempotent,
            attempt=retries.attempts - len(retries.refused),  # 401s cost no budget
            policy=self.retry,
            status=response.status,
            retry_after=retry_after,
            reauthed=token is None
            or token.value in retries.refused
            or retries.reauths >= MAX_REAUTHS
            or len(retries.refused) >= MAX_401S,
        )
        retries.verdict = decision.verdict
        if decision.verdict is Verdict.REAUTH and self.auth is not None and token:
            if self.auth.invalidate(token):
                retries.reauths += 1  # this call found the token dead
            retries.refused.add(token.value)
            return True
        retries.unknown = decision.verdict is Verdict.UNKNOWN
        return await self._wait(decision, retries.waits, started)

    async def _wait(self, decision: Decision, waits: Any, started: float) -> bool:
        """Sleep before a retry; False when there is no retry (or no time left for one)."""
        if decision.verdict is not Verdict.RETRY:
            return False
        delay = decision.delay if decision.delay is not None else next(waits)
        if self.clock.time() - started + delay > self.retry.max_time:
            return False
        await self.sleep(delay)
        return True

    def _give_up(self, request: Request, failed: _Failed) -> Exception:
        cause = failed.cause
        what = cause.kind if isinstance(cause, TransportError) else type(cause).__name__
        where = f"{self.base_url.host}:{self.base_url.port}"
        if failed.failure is Failure.NOT_SENT:
            return RequestNotSentError(
                f"{request.operation}: could not reach the service at {where} ({what}).",
                operation=request.operation,
            )
        advice = None
        # Only while the server has never answered in HTTP: a dropped connection later is
        # an ordinary failure, not a sign that it speaks TLS.
        if (
            self.base_url.scheme == "http"
            and not self.answered
            and isinstance(cause, TransportError)
            and cause.not_http
        ):
            advice = (
                f"The answer from {where} was not HTTP: if the server speaks TLS, use "
                "https:// in the base URL."
            )
        return _unknown(request, f"{what} from {where}", advice)

    async def _attempt(
        self, request: Request, token: Any, consume: Consumer[Any] | None
    ) -> tuple[Response, Any]:
        """One attempt as a :class:`Response`: with a consumer, or in a telemetry span."""
        if self.closed:
            raise RuntimeError(_CLOSED)
        try:
            # Headers and body built in the call, never held in a local (see call()).
            if consume is None:
                got = await self._fetch(self._wire(request, token), MAX_ANSWER_BYTES)
            else:
                got = await self.transport.send(self._wire(request, token))
            self.answered = True
            if isinstance(got, tuple):
                return Response(*got, self.scrubber), None
            if consume is not None and 200 <= got.status < 300:
                try:
                    result = await consume(got)
                finally:
                    got.close()
                return Response(got.status, got.headers, scrubber=self.scrubber), result
        except TransportError as exc:
            raise _failed(exc) from exc
        status, head, body = await _read(got, request.operation)
        return Response(status, head, body, self.scrubber), None

    def _wire(self, request: Request, token: Any) -> TransportRequest:
        """One attempt's request. A request sent again with the same token (a status read,
        a retry) reuses the one made before, kept on it (``Request.sent``): transports
        never change what they are given, and multipart bodies are rebuilt from their
        sources at each send. The headers come from :meth:`_headers`."""
        kept = request.sent
        if kept and kept[0] is token and kept[2] is self:
            return kept[1]  # type: ignore[no-any-return]
        # Built into the request's slot, never into a local (the headers hold the token).
        kept[:] = (
            token,
            TransportRequest(
                request.method,
                self._base + request.path,
                self._headers(request, token),
                None if request.json is None or request.parts else _json(request.json),
                parts=request.parts,
                params=request.params,
                transfer=request.transfer,
                operation=request.operation,
                timeouts=self.timeouts,
            ),
            self,
        )
        return kept[1]  # type: ignore[no-any-return]

    def _headers(self, request: Request, token: Any) -> Mapping[str, str]:
        """The headers of an attempt. Those of a plain JSON call with the current token are
        made once per token and shared (transports never change them); others per call."""
        if token is None or request.json is not None or request.headers != JSON_HEADERS:
            return _headers(request, token)
        if token is not self._bearer_token:
            self._bearer = _headers(request, token)
            self._bearer_token = token
        return self._bearer

    def _log(
        self,
        request: Request,
        attempt: int,
        loop_started: float,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        log_attempt(  # called only when debug logging is on
            method=request.method,
            operation=request.operation,
            attempt=attempt,
            elapsed=time.perf_counter() - loop_started,
            status=status,
            error=error,
            request_id=request_id_of(headers, self.scrubber) if headers is not None else None,
        )


MAX_ANSWER_BYTES = 16 * 1024 * 1024  # JSON, error bodies, the InfoCert contract


_CLOSED = "this QESClient is closed; create a new one to make calls"


def _sender_of(transport: Transport) -> Fetch:
    """``fetch`` over a transport that only sends: every answer comes back open."""

    def fetch(request: TransportRequest, limit: int) -> Awaitable[TransportResponse]:
        return transport.send(request)  # the coroutine itself: no layer of its own

    return fetch


def _failed(exc: TransportError) -> _Failed:
    return _Failed(Failure.NO_ANSWER if exc.sent else Failure.NOT_SENT, exc)


async def _read(resp: TransportResponse, operation: str) -> SmallAnswer:
    """An open answer read whole (under the bound), then closed."""
    try:
        head = resp.headers  # case-insensitive; kept as is, copying costs per call
        declared = resp.content_length
        if (
            declared is not None
            and declared <= MAX_ANSWER_BYTES
            and "content-encoding" not in head  # a compressed length says nothing
        ):
            body = await resp.read()  # a small answer of known length
        else:
            body = await _read_capped(resp, operation)
        return resp.status, head, body
    except TransportError as exc:
        raise _failed(exc) from exc
    finally:
        resp.close()


async def _read_capped(resp: TransportResponse, operation: str) -> bytes:
    """Read an ordinary answer whole, up to more than this API ever sends.

    The bound is on the decoded bytes: a compressed answer is read as it inflates, and
    reading stops once it passes the bound. An oversized error answer keeps its first
    bytes (the status says what went wrong; the body only adds an excerpt); an oversized
    success answer is refused. Signed documents stream to disk under their own bound.
    """
    declared = resp.content_length
    chunks: list[bytes] = []
    size = 0
    if declared is None or "content-encoding" in resp.headers:
        async for chunk in resp.iter_chunks(64 * 1024):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    if not 200 <= resp.status < 300:
        return b"".join(chunks)[:MAX_ANSWER_BYTES]
    raise DecodeError(
        f"the answer is larger than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB, more than this "
        "API ever sends",
        status=resp.status,
        request_id=request_id_of(resp.headers, None),
        operation=operation,
    )


class _Retries:
    """One call's retry state, made at its first failure."""

    __slots__ = ("attempts", "reauths", "refused", "retry_after", "unknown", "verdict", "waits")

    def __init__(self, waits: Iterator[float]) -> None:
        self.waits = waits
        self.attempts = 0  # attempts that failed or were refused so far
        self.reauths = 0
        self.refused: set[str] = set()
        self.retry_after: float | None = None
        self.unknown = False  # the last refusal leaves an unsafe call's outcome unknown
        self.verdict: Verdict | None = None  # the policy's last answer (for telemetry)


def _root(cause: BaseException) -> BaseException:
    """What a give-up error is raised from: the HTTP library's own failure when the
    transport kept it (``raise ... from``), else the transport's error."""
    if isinstance(cause, TransportError) and cause.__cause__ is not None:
        return cause.__cause__
    return cause


def _refusal(request: Request, response: Response, retries: _Retries) -> Exception:
    """The error to raise once the last answer is final (after _after_answer said no)."""
    error = error_from_response(response, request.operation, retries.retry_after)
    if retries.unknown:
        unknown = _unknown(request, f"HTTP {response.status}")
        unknown.__cause__ = error  # as `raise ... from error`
        return unknown
    return error


def _unknown(request: Request, what: str, hint: str | None = None) -> OutcomeUnknownError:
    advice = OutcomeUnknownError.advice
    if request.idempotent:
        advice = "This call has no side effect that repeats; it is safe to try it again later."
    return OutcomeUnknownError(
        f"{request.operation}: the request may have reached the service but no clear answer "
        f"came back ({what}).",
        operation=request.operation,
        advice=f"{hint} {advice}" if hint else advice,
    )


def _headers(request: Request, token: Any) -> dict[str, str]:
    """The headers of one attempt (the token goes in here, per attempt)."""
    headers = dict(request.headers)
    if token is not None:
        scheme = "Bearer" if token.token_type.lower() == "bearer" else token.token_type
        headers["Authorization"] = f"{scheme} {token.value}"
    if request.json is not None and not request.parts:
        headers["Content-Type"] = "application/json"
    return headers


def _json(value: Any) -> bytes:
    """A JSON body, encoded."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
