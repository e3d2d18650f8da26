"""The transport seam: what the client needs from an HTTP library, and nothing more.

A :class:`Transport` sends one :class:`TransportRequest` and hands back an open
:class:`TransportResponse` (status, headers, a bounded stream of body bytes), or raises
:class:`TransportError` when no HTTP answer came. A transport may also offer ``fetch``
(:class:`FetchingTransport`): send and read a small answer in one step, which the client
then uses for every call whose answer it reads whole (all but downloads). Everything that
decides (retries, re-authentication, errors, logs) sits above it in the client and works
the same over any transport: the aiohttp adapter the client uses by default, or
:class:`qes_async.testing.MockTransport` in memory.

Pure declarations: no I/O, no asyncio, no aiohttp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "BodyPart",
    "FetchingTransport",
    "SmallAnswer",
    "Timeouts",
    "Transport",
    "TransportError",
    "TransportRequest",
    "TransportResponse",
]


@attrs.frozen
class Timeouts:
    """Timeouts in seconds, applied by the transport to every attempt.

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


@attrs.frozen
class BodyPart:
    """One part of a multipart/form-data body.

    ``data`` holds small bytes (JSON metadata, a selfie); ``source`` is a callable returning
    a fresh async iterator of chunks, so the body can be rebuilt for every attempt.
    """

    name: str
    content_type: str
    filename: str | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    source: Callable[[], AsyncIterator[bytes]] | None = attrs.field(default=None, repr=False)


class TransportRequest:
    """One attempt to send, built by the client for every attempt. A transport reads it and
    never changes it: ``headers`` may be shared by the attempts made with one token.

    Attributes:
        method: the HTTP method.
        url: the absolute URL, path already quoted.
        headers: the request headers, the bearer token among them (never shown); read-only.
        body: the encoded body (JSON), or None; ``parts`` for a multipart/form-data body.
        params: query parameters.
        transfer: a large upload or download: bounded per read, not in total.
        operation: the SDK operation, for errors the transport raises.
        timeouts: the client's :class:`Timeouts`.
    """

    __slots__ = (
        "body",
        "headers",
        "method",
        "operation",
        "params",
        "parts",
        "timeouts",
        "transfer",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        parts: tuple[BodyPart, ...] = (),
        params: Mapping[str, str] | None = None,
        transfer: bool = False,
        operation: str = "",
        timeouts: Timeouts | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.parts = parts
        self.params = params
        self.transfer = transfer
        self.operation = operation
        self.timeouts = timeouts if timeouts is not None else _DEFAULT_TIMEOUTS

    def __repr__(self) -> str:  # headers and body hold secrets: never shown
        return f"TransportRequest({self.method} {self.url}, operation={self.operation!r})"


_DEFAULT_TIMEOUTS = Timeouts()


@runtime_checkable
class TransportResponse(Protocol):
    """An open answer. The client reads it once, then calls :meth:`close`.

    Attributes:
        status: the HTTP status.
        headers: the answer's headers, looked up case-insensitively (lower-case names
            always work).
        content_length: the declared length of the body, or None.
    """

    status: int
    headers: Mapping[str, str]
    content_length: int | None

    async def read(self) -> bytes:
        """The whole (decoded) body. The client calls it only for an answer whose
        ``content_length`` is declared and small, and relies on the transport to read no
        more than that (aiohttp does); any other answer is read through
        :meth:`iter_chunks` under the client's own bound."""
        ...

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        """The (decoded) body in chunks of at most ``size`` bytes."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent; an unread body is discarded)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Sends requests. Raise :class:`TransportError` when no HTTP answer came (from
    :meth:`send`, or while the body is read), and :class:`qes_async.TLSError` for a
    refused certificate; any status is an answer, never an exception."""

    async def send(self, request: TransportRequest) -> TransportResponse:
        """Send one attempt and return the open answer."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds (a session it created)."""
        ...


#: A small answer read whole: status, headers (case-insensitive), the body.
SmallAnswer = tuple[int, Mapping[str, str], bytes]


@runtime_checkable
class FetchingTransport(Transport, Protocol):
    """A transport that can also send and read a small answer in one step.

    Optional: the client looks for ``fetch`` once, and without it sends through
    :meth:`Transport.send` and reads the answer itself. With it, an ordinary call crosses
    one coroutine of the transport instead of three (send, read, and each resume of them),
    and no object stands for the open answer.
    """

    async def fetch(self, request: TransportRequest, limit: int) -> SmallAnswer | TransportResponse:
        """Send one attempt, as :meth:`Transport.send` does (and raise as it does).

        An answer that declares a length of at most ``limit`` bytes and no content encoding
        is read whole and comes back as ``(status, headers, body)``, its connection
        released; raise :class:`TransportError` if its body is cut. Any other answer comes
        back open, as :meth:`Transport.send` returns it, for the client to read under its
        own bound (returning the open answer is always correct).
        """
        ...


class TransportError(Exception):
    """No HTTP answer came to one attempt.

    Attributes:
        sent: False when nothing can have reached the service (connection refused, DNS,
            a connect timeout): any call may be sent again. True when it may have (the
            connection dropped or timed out after sending): only a replay-safe call is.
        kind: what went wrong, in a word (the underlying exception's name), for messages.
        not_http: the server answered with bytes that are no HTTP (a TLS server spoken
            to in plain HTTP, say): the client's error then suggests ``https://``.
    """

    def __init__(
        self, message: str, *, sent: bool, kind: str | None = None, not_http: bool = False
    ) -> None:
        super().__init__(message)
        self.sent = sent
        self.kind = kind or type(self).__name__
        self.not_http = not_http
