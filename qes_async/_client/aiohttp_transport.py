"""The aiohttp adapter: the one module of the client that knows aiohttp.

It turns a :class:`~qes_async.TransportRequest` into an aiohttp request (the session, its
trace configs, TLS, timeouts, the multipart body) and aiohttp's answer and exceptions into
the transport protocol's: an open :class:`~qes_async.TransportResponse`, or
:class:`~qes_async.TransportError` saying whether anything may have been sent. Everything
that decides sits above, in :mod:`.sending`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as _ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeGuard

import aiohttp
from aiohttp import connector as aiohttp_connector
from aiohttp import payload
from yarl import URL

from .._core.errors import InvalidInputError, TLSError
from .._core.recent import Recent
from .transport import SmallAnswer, Timeouts, TransportError, TransportRequest

__all__ = ["AiohttpTransport", "client_timeout", "default_ssl_context"]

# Parsed request URLs, the least recently used dropped first. As many as the client keeps
# prepared status reads (the URLs read again and again): each costs about 0.7 KB, and a
# larger cap only held one per waiting flow, which reads its status once in a long while.
_URLS_KEPT = 256


def _verifying(context: object) -> TypeGuard[_ssl.SSLContext]:
    """True for an SSL context as strict as ``ssl.create_default_context()``'s.

    It checks certificates against a trust store and hostnames, and accepts nothing older
    than TLS 1.2 (the default's floor since Python 3.10).
    """
    return (
        isinstance(context, _ssl.SSLContext)
        and context.verify_mode == _ssl.CERT_REQUIRED
        and context.check_hostname
        and context.minimum_version >= _ssl.TLSVersion.TLSv1_2
    )


@functools.cache
def default_ssl_context() -> _ssl.SSLContext:
    """The verifying context of the system trust store, made once per process.

    aiohttp builds the same one at import (``ssl.create_default_context()`` with ALPN
    ``http/1.1``) for its requests without an ``ssl`` argument: that one is reused, never
    changed, when it is as strict. Otherwise (another aiohttp, or a context weakened by
    someone) one of our own is made, at the cost of loading the trust store again (about
    25 ms).
    """
    shared = getattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED", None)
    if _verifying(shared):
        return shared
    return _ssl.create_default_context()


def client_timeout(timeouts: Timeouts, transfer: bool) -> aiohttp.ClientTimeout:
    """The aiohttp timeout for one kind of call."""
    if transfer:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.transfer_read
        )
    return aiohttp.ClientTimeout(
        total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.read
    )


class AiohttpTransport:
    """Sends requests through an aiohttp session.

    Args:
        session: an ``aiohttp.ClientSession`` to use, never closed here; without one a
            session is created inside the running loop on first use and closed by
            :meth:`aclose`.
        trace_configs: aiohttp trace configs for the session created here.
        ssl: an ``ssl.SSLContext`` (a private CA). Verification is always on: a real
            context goes with every request, so a session's connector made with
            ``ssl=False`` cannot weaken it.
    """

    def __init__(
        self,
        session: object | None = None,
        *,
        trace_configs: Iterable[object] = (),
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidInputError(
                "session",
                f"must be an aiohttp.ClientSession, not {type(session).__name__}",
                advice="Pass the session your app already has, or none.",
            )
        configs = list(trace_configs)
        bad = [type(c).__name__ for c in configs if not isinstance(c, aiohttp.TraceConfig)]
        if bad:
            raise InvalidInputError(
                "trace_configs", f"must be aiohttp.TraceConfig objects, not {', '.join(bad)}"
            )
        if session is not None and configs:
            raise InvalidInputError(
                "trace_configs",
                "cannot be added to a session you supplied",
                advice="Create your session with ClientSession(trace_configs=...) instead.",
            )
        self._session: aiohttp.ClientSession | None = session
        self._owns_session = session is None
        self._trace_configs: list[aiohttp.TraceConfig] = configs  # type: ignore[assignment]
        #: True when the caller chose the trust (a private CA), False for the system's.
        self.custom_ssl = ssl is not None
        self.ssl_context: _ssl.SSLContext = ssl if ssl is not None else default_ssl_context()
        self._urls: Recent[str, URL] = Recent(_URLS_KEPT)
        self._timeouts: Timeouts | None = None
        self._client_timeouts: tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use."""
        if self._session is None:
            self._session = aiohttp.ClientSession(trace_configs=self._trace_configs or None)
        return self._session

    async def aclose(self) -> None:
        """Close the session if it was created here."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def forget_urls(self, urls: Iterable[str]) -> None:
        """Drop the parsed form of ``urls`` (a finished signature's): only a cache."""
        for url in urls:
            self._urls.pop(url, None)

    def _url(self, url: str) -> URL:
        parsed = self._urls.recent(url)
        if parsed is None:
            parsed = self._urls.keep(url, URL(url, encoded=True))
        return parsed

    def _timeout(self, request: TransportRequest) -> aiohttp.ClientTimeout:
        if request.timeouts is not self._timeouts or self._client_timeouts is None:
            self._timeouts = request.timeouts
            self._client_timeouts = (
                client_timeout(request.timeouts, False),
                client_timeout(request.timeouts, True),
            )
        return self._client_timeouts[request.transfer]

    def _start(self, request: TransportRequest) -> Any:
        """aiohttp's request for one attempt, not yet awaited (no coroutine of its own)."""
        timeouts = self._client_timeouts
        return (self._session or self.session).request(
            request.method,
            self._url(request.url),
            params=request.params or None,
            # Headers (the bearer token) and body (the client secret, a passcode) are
            # passed in the call, never held in a local of this frame: error trackers
            # record the locals of every frame of a traceback.
            headers=request.headers,
            data=_body(request) if request.parts else request.body,
            timeout=(
                timeouts[request.transfer]
                if timeouts is not None and request.timeouts is self._timeouts
                else self._timeout(request)
            ),
            ssl=self.ssl_context,
            allow_redirects=False,
        )

    async def send(self, request: TransportRequest) -> _Answer:
        """Send one attempt; the answer is open until its :meth:`_Answer.close`."""
        try:
            resp = await self._start(request)
        except Exception as exc:
            raise _send_failure(request.operation, exc) from exc
        return _Answer(resp)

    async def fetch(self, request: TransportRequest, limit: int) -> SmallAnswer | _Answer:
        """Send one attempt and read a small answer in the same coroutine (see
        :class:`~qes_async._client.transport.FetchingTransport`); a larger, unknown or
        compressed one comes back open."""
        try:
            resp = await self._start(request)
        except Exception as exc:
            raise _send_failure(request.operation, exc) from exc
        head = resp.headers
        declared = head.get("Content-Length")  # resp.content_length, without its call
        if declared is None or int(declared) > limit or "Content-Encoding" in head:
            return _Answer(resp)
        try:
            return resp.status, head, await resp.read()
        except Exception as exc:
            raise _transport_error(exc) from exc
        finally:
            resp.release()


class _Answer:
    """aiohttp's response seen through the transport protocol."""

    __slots__ = ("_resp", "content_length", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers  # case-insensitive, kept as is
        self.content_length = resp.content_length

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except Exception as exc:
            raise _transport_error(exc) from exc

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        content = self._resp.content
        watch = _ReadWatch.over(self._resp)
        try:
            if watch is None:
                async for chunk in content.iter_chunked(size):
                    yield chunk
                return
            loop_time = watch.loop.time
            while True:
                watch.waiting_since = loop_time()
                chunk = await content.read(size)
                watch.waiting_since = None
                if not chunk:
                    return
                yield chunk
        except Exception as exc:
            raise _transport_error(exc) from exc
        finally:
            if watch is not None:
                watch.stop()

    def close(self) -> None:
        self._resp.release()


class _ReadWatch:
    """The per-read time bound of a streamed body, kept by one timer per bound.

    aiohttp enforces ``sock_read`` by re-arming a timer on every piece the socket
    delivers: for a 200 MB download, thousands of timers made and cancelled, a tenth of
    the loop's work. Once the body is being streamed, the connection's own timer is
    turned off and this one checks, every ``timeout`` seconds, whether a read has been
    waiting on the network for ``timeout`` seconds; if so it fails the read as aiohttp
    would (``SocketTimeoutError``). Time the consumer spends with a chunk (writing it)
    is not counted, as aiohttp does not count time while reading is paused.
    """

    __slots__ = ("_content", "_handle", "_protocol", "loop", "timeout", "waiting_since")

    def __init__(self, resp: aiohttp.ClientResponse, protocol: Any, timeout: float) -> None:
        self._content = resp.content
        self._protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.waiting_since: float | None = None
        self._handle: asyncio.TimerHandle | None = self.loop.call_later(timeout, self._check)

    @classmethod
    def over(cls, resp: aiohttp.ClientResponse) -> _ReadWatch | None:
        """A watch taking over the connection's read timeout, or None when there is
        none to take over (no timeout, or the body has already arrived)."""
        connection = resp.connection
        protocol = connection.protocol if connection is not None else None
        timeout = getattr(protocol, "read_timeout", None)
        if not timeout or resp.content.is_eof():
            return None
        # Its armed timer is dropped at the next piece: with no timeout, aiohttp's
        # reschedule only cancels. The next request on the connection sets its own.
        protocol.read_timeout = None  # type: ignore[union-attr]
        return cls(resp, protocol, timeout)

    def _check(self) -> None:
        since = self.waiting_since
        now = self.loop.time()
        if since is not None and now - since >= self.timeout:
            self._handle = None
            # What aiohttp's own timer does: the connection is marked to close and the
            # waiting read raises the error.
            exc = aiohttp.SocketTimeoutError("Timeout on reading data from socket")
            self._protocol.set_exception(exc)
            self._content.set_exception(exc)
            return
        due = (since if since is not None else now) + self.timeout
        self._handle = self.loop.call_at(due, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._protocol.read_timeout is None:
            self._protocol.read_timeout = self.timeout  # the body's end on a reused connection


_NO_ANSWER = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


def _transport_error(exc: Exception) -> Exception:
    """aiohttp's failure as the protocol's: whether anything may have been sent. Anything
    that is no transport failure (a bug) is returned as it is, to propagate."""
    kind = type(exc).__name__
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return TransportError(str(exc) or kind, sent=False, kind=kind)
    if type(exc) is asyncio.TimeoutError and _cut_in_connector(exc):
        # The call's total time ran out before it had a connection (waiting for one of
        # the pool's, resolving, connecting): nothing of it was sent.
        return TransportError(str(exc) or kind, sent=False, kind=kind)
    if isinstance(exc, _NO_ANSWER):
        # An answer that is no HTTP at all (a TLS server's bytes read as HTTP).
        not_http = isinstance(exc, (aiohttp.ClientResponseError, aiohttp.ServerDisconnectedError))
        return TransportError(str(exc) or kind, sent=True, kind=kind, not_http=not_http)
    return exc


#: aiohttp's modules that work before a call has its connection.
_CONNECTING = frozenset({"aiohttp.connector", "aiohttp.resolver"})


def _cut_in_connector(exc: BaseException) -> bool:
    """Whether aiohttp's total timer cut the call short inside its connector: the timer
    cancels the call, and its TimeoutError carries that cancellation, whose traceback ends
    where the call was. Its innermost aiohttp frame in the connector or resolver means
    the call had no connection yet (the request is written only after ``connect``)."""
    cause = exc.__cause__
    if not isinstance(cause, asyncio.CancelledError):
        return False
    innermost = None
    tb = cause.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith("aiohttp."):
            innermost = module
        tb = tb.tb_next
    return innermost in _CONNECTING


def _send_failure(operation: str, exc: Exception) -> Exception:
    """What a failed send raises: a TLS failure (never retried), else the protocol's."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return tls_error(operation, exc)
    return _transport_error(exc)


def tls_error(operation: str, exc: aiohttp.ClientSSLError) -> TLSError:
    """A certificate or handshake failure: never transient, so never retried."""
    host = getattr(exc, "host", "") or "the server"
    cause = getattr(exc, "certificate_error", None) or (exc.args[1] if len(exc.args) > 1 else None)
    reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
    what = type(exc).__name__ + (f": {reason}" if reason else "")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        message = f"{operation}: the TLS certificate of {host} was refused ({what})."
    else:
        message = f"{operation}: the TLS handshake with {host} failed ({what})."
    return TLSError(message, operation=operation)


def _body(request: TransportRequest) -> Any:
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
    return request.body
