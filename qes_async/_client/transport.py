"""The thin aiohttp shell: send a :class:`Request`, retry by the pure policy, return bytes.

Everything that decides lives elsewhere: what to send (``_protocol``), whether to retry
(``_retry``), how the token is cached (``_auth``). This module opens connections, sleeps
through the injected ``sleep``, logs one line per attempt and turns aiohttp's exceptions into
the SDK's own errors. No aiohttp type leaves it, except to a download consumer.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import aiohttp
import attrs
from aiohttp import payload
from yarl import URL

from .._core.errors import DecodeError, OutcomeUnknownError, RequestNotSentError, TLSError
from .._core.redact import Scrubber
from .._runtime import telemetry as _telemetry
from .._runtime.clock import Clock
from .._runtime.logs import log_attempt, logger
from .auth import TokenCache
from .protocol import Request, Response, error_from_response, request_id_of
from .retry import Decision, Failure, RetryPolicy, Verdict, decide, parse_retry_after
from .routes import Routes

__all__ = ["Consumer", "Timeouts", "Transport", "classify_exception"]

T = TypeVar("T")
Consumer = Callable[[aiohttp.ClientResponse], Awaitable[T]]


_URLS_KEPT = 16_384  # parsed request URLs, oldest dropped first
MAX_REAUTHS = 3  # tokens one call may find dead (each a different one) before giving up
MAX_401S = 12  # 401s one call takes in all, counting tokens others had already replaced


@attrs.frozen
class Timeouts:
    """Timeouts in seconds.

    Attributes:
        connect: to open a connection (nothing was sent if it runs out: always retried).
        read: the longest wait for the next bytes of an ordinary answer; off (None) by
            default because ``total`` already bounds these small answers, and a per-read
            timer costs about 8% of throughput at high concurrency.
        total: the whole of an ordinary (JSON) call, per attempt.
        transfer_read: per read for uploads and downloads, which have no total bound so
            that a large file on a slow line is not cut off while it keeps moving.
    """

    connect: float = 10.0
    read: float | None = None
    total: float = 60.0
    transfer_read: float = 60.0

    def for_request(self, transfer: bool) -> aiohttp.ClientTimeout:
        """The aiohttp timeout for one kind of call (the transport builds each once)."""
        if transfer:
            return aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect, sock_read=self.transfer_read
            )
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.read
        )


def classify_exception(exc: BaseException) -> Failure | None:
    """Whether an aiohttp failure happened before sending (NOT_SENT) or after (NO_ANSWER).

    None: not a transport failure (a bug or the consumer's own error): let it propagate.
    """
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return Failure.NOT_SENT
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return Failure.NO_ANSWER
    if isinstance(exc, asyncio.TimeoutError):
        return Failure.NO_ANSWER
    return None


@functools.cache
def default_ssl_context() -> _ssl.SSLContext:
    """The verifying context of the system trust store, made once per process."""
    return _ssl.create_default_context()


def tls_error(request: Request, exc: aiohttp.ClientSSLError) -> TLSError:
    """A certificate or handshake failure: never transient, so never retried."""
    host = getattr(exc, "host", "") or "the server"
    cause = getattr(exc, "certificate_error", None) or (exc.args[1] if len(exc.args) > 1 else None)
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
    what = type(exc).__name__ + (f": {reason}" if reason else "")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        message = f"{request.operation}: the TLS certificate of {host} was refused ({what})."
    else:
        message = f"{request.operation}: the TLS handshake with {host} failed ({what})."
    return TLSError(message, operation=request.operation)


class _Failed(Exception):
    def __init__(self, failure: Failure, cause: BaseException) -> None:
        self.failure = failure
        self.cause = cause


class Transport:
    """Sends requests with retries, authentication and logging.

    The session is created lazily inside the running loop unless one is given; a given
    session is never closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None,
        retry: RetryPolicy,
        timeouts: Timeouts,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        trace_configs: Iterable[aiohttp.TraceConfig] = (),
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = URL(base_url.rstrip("/"))
        self._base = str(self.base_url)  # paths from Routes are already quoted
        self._session = session
        self._owns_session = session is None
        self._trace_configs = list(trace_configs)
        #: True when the caller chose the trust (a private CA), False for the system's.
        self.custom_ssl = ssl is not None
        # A real context on every request: ``ssl=True`` would defer to the session's
        # connector, and a caller's connector made with ``ssl=False`` would silently turn
        # verification off.
        self._ssl: _ssl.SSLContext | bool = ssl if ssl is not None else True
        if ssl is None and self.base_url.scheme == "https":
            self._ssl = default_ssl_context()
        self.scrubber = Scrubber()  # the client's literal secrets, cut from error excerpts
        self.answered = False  # whether the server ever answered in HTTP (for advice)
        self.retry = retry
        self.timeouts = timeouts
        self._client_timeouts = (timeouts.for_request(False), timeouts.for_request(True))
        self._urls: dict[str, URL] = {}
        self.clock = clock
        self.sleep = sleep
        self.auth: TokenCache | None = None
        #: The client's route table: telemetry names each attempt's path template from it.
        self.routes: Routes | None = None
        self.closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use; refused once the client is closed."""
        if self.closed:
            raise RuntimeError("this QESClient is closed; create a new one to make calls")
        if self._session is None:
            self._session = aiohttp.ClientSession(trace_configs=self._trace_configs or None)
        return self._session

    async def aclose(self) -> None:
        """Close the session if we created it."""
        self.closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def forget_paths(self, paths: Iterable[str]) -> None:
        """Drop the parsed URLs of ``paths`` (a finished signature's): only a cache."""
        urls = self._urls
        for path in paths:
            urls.pop(path, None)

    async def send(self, request: Request) -> Response:
        """Send with retries; a 2xx answer read whole, else the typed error.

        Raises:
            ServiceError: (a subclass) the service answered no.
            RequestNotSentError: nothing reached the service, retries spent.
            OutcomeUnknownError: an unsafe call may have been processed (never replayed),
                or a safe one kept getting no answer.
        """
        response, _ = await self.exchange(request, None)
        return response

    async def exchange(
        self, request: Request, consume: Consumer[Any] | None
    ) -> tuple[Response, Any]:
        """Send with retries; a 2xx answer goes open to ``consume`` (re-run per attempt) when
        one is given, else it is read whole. Returns the answer and what ``consume`` made.

        :meth:`send` is the shorthand without a consumer; hot paths call this directly, since
        every coroutine layer is crossed again at each suspension.
        Retry state is only made once something failed, so a call that succeeds at once pays
        for none of it.
        """
        started = self.clock.time()
        retries: _Retries | None = None
        # None unless qes_async.otel.instrument() ran: then this one test is all it costs.
        tel = _telemetry.hook
        while True:
            token = None
            if request.authenticated and self.auth is not None:
                token = self.auth.current() or await self.auth.get()
            debug = _debug()
            began = time.perf_counter() if debug else 0.0
            attempt = (retries.attempts if retries else 0) + 1
            try:
                if tel is None:
                    response, result = await self._attempt(request, token, consume)
                else:  # the attempt in its span (the coroutine holds the token, not the hook)
                    call = self._attempt(request, token, consume)
                    response, result = await tel.attempt(self, request, attempt, call)
            except _Failed as failed:
                retries = retries or _Retries(self.retry.waits())
                if debug:
                    self._log(request, attempt, began, error=type(failed.cause).__name__)
                retrying = self._after_failure(request, failed, retries, started)
                if await (retrying if tel is None else tel.decide(retrying, retries)):
                    continue
                raise self._give_up(request, failed) from failed.cause
            if debug:
                self._log(request, attempt, began, response=response)
            if 200 <= response.status < 300:
                return response, result
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
        what = type(failed.cause).__name__
        where = f"{self.base_url.host}:{self.base_url.port}"
        if failed.failure is Failure.NOT_SENT:
            return RequestNotSentError(
                f"{request.operation}: could not reach the service at {where} ({what}).",
                operation=request.operation,
            )
        advice = None
        # Only while the server has never answered in HTTP: a dropped connection later is
        # an ordinary failure, not a sign that it speaks TLS.
        if self.base_url.scheme == "http" and not self.answered and _protocol_error(failed.cause):
            advice = (
                f"The answer from {where} was not HTTP: if the server speaks TLS, use "
                "https:// in the base URL."
            )
        return _unknown(request, f"{what} from {where}", advice)

    async def _attempt(
        self, request: Request, token: Any, consume: Consumer[Any] | None
    ) -> tuple[Response, Any]:
        url = self._urls.get(request.path)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:
                del self._urls[next(iter(self._urls))]
            url = self._urls[request.path] = URL(self._base + request.path, encoded=True)
        try:
            async with self.session.request(
                request.method,
                url,
                params=request.params or None,
                # Headers (the bearer token) and body (the client secret, a passcode) are
                # built in the call, never held in a local of this frame: error trackers
                # record the locals of every frame of a traceback.
                **_payload(request, token),
                timeout=self._client_timeouts[request.transfer],
                ssl=self._ssl,
                allow_redirects=False,
            ) as resp:
                head = resp.headers  # case-insensitive; kept as is, copying costs per call
                self.answered = True
                if consume is not None and 200 <= resp.status < 300:
                    result = await consume(resp)
                    return Response(resp.status, head, scrubber=self.scrubber), result
                declared = resp.content_length
                if (
                    declared is not None
                    and declared <= MAX_ANSWER_BYTES
                    and "Content-Encoding" not in head  # a compressed length says nothing
                ):
                    body = await resp.read()  # the usual case: a small answer of known length
                else:
                    body = await _read_capped(resp, request.operation)
                return Response(resp.status, head, body, self.scrubber), None
        except aiohttp.ClientSSLError as exc:
            raise tls_error(request, exc) from exc
        except Exception as exc:
            failure = classify_exception(exc)
            if failure is None:
                raise
            raise _Failed(failure, exc) from exc

    def _log(
        self,
        request: Request,
        attempt: int,
        loop_started: float,
        *,
        response: Response | None = None,
        error: str | None = None,
    ) -> None:
        log_attempt(  # called only when debug logging is on
            method=request.method,
            operation=request.operation,
            attempt=attempt,
            elapsed=time.perf_counter() - loop_started,
            status=response.status if response is not None else None,
            error=error,
            request_id=response.request_id if response is not None else None,
        )


def _debug() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


MAX_ANSWER_BYTES = 16 * 1024 * 1024  # JSON, error bodies, the InfoCert contract


async def _read_capped(resp: aiohttp.ClientResponse, operation: str) -> bytes:
    """Read an ordinary answer whole, up to more than this API ever sends.

    The bound is on the decoded bytes: a compressed answer is read as it inflates, and
    reading stops once it passes the bound. An oversized error answer keeps its first
    bytes (the status says what went wrong; the body only adds an excerpt); an oversized
    success answer is refused. Signed documents stream to disk under their own bound.
    """
    declared = resp.content_length
    chunks: list[bytes] = []
    size = 0
    if declared is None or "Content-Encoding" in resp.headers:
        async for chunk in resp.content.iter_chunked(64 * 1024):
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


def _refusal(request: Request, response: Response, retries: _Retries) -> Exception:
    """The error to raise once the last answer is final (after _after_answer said no)."""
    error = error_from_response(response, request.operation, retries.retry_after)
    if retries.unknown:
        unknown = _unknown(request, f"HTTP {response.status}")
        unknown.__cause__ = error  # as `raise ... from error`
        return unknown
    return error


def _protocol_error(exc: BaseException) -> bool:
    """An answer that is no HTTP at all (a TLS server's bytes read as HTTP)."""
    return isinstance(exc, (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError))


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


def _payload(request: Request, token: Any) -> dict[str, Any]:
    """The ``headers`` and ``data`` of one attempt (the token goes in here, per attempt)."""
    headers = dict(request.headers)
    if token is not None:
        scheme = "Bearer" if token.token_type.lower() == "bearer" else token.token_type
        headers["Authorization"] = f"{scheme} {token.value}"
    return {"data": _body(request, headers), "headers": headers}


def _body(request: Request, headers: dict[str, str]) -> Any:
    """A fresh body for one attempt (multipart bodies are rebuilt, never reused)."""
    if request.parts:
        writer = aiohttp.MultipartWriter("form-data")
        for part in request.parts:
            if part.source is not None:
                item: payload.Payload = payload.AsyncIterablePayload(
                    part.source(), content_type=part.content_type
                )
            else:
                item = payload.BytesPayload(part.data or b"", content_type=part.content_type)
            if part.filename is None:
                item.set_content_disposition("form-data", name=part.name)
            else:
                item.set_content_disposition("form-data", name=part.name, filename=part.filename)
            writer.append_payload(item)
        return writer
    if request.json is not None:
        headers["Content-Type"] = "application/json"
        return json.dumps(request.json, separators=(",", ":")).encode("utf-8")
    return None
