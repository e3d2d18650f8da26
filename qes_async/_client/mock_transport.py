"""An in-memory transport: scripted answers, recorded requests, no sockets.

``QESClient(..., transport=MockTransport())`` runs the whole client (retries, re-auth,
typed errors, downloads) against answers you script, so a test of your own code, or of
a retry rule, needs no server. Exposed as :class:`qes_async.testing.MockTransport`.
"""

from __future__ import annotations

import inspect
import json as _json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from .operations import Operation
from .transport import BodyPart, TransportError, TransportRequest

__all__ = ["MockResponse", "MockTransport", "RecordedRequest"]


class _Headers(Mapping[str, str]):
    """A case-insensitive header mapping, as an HTTP library's answer has."""

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, str] | None) -> None:
        self._items = {k.lower(): v for k, v in (headers or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class MockResponse:
    """A scripted answer (satisfies :class:`~qes_async.TransportResponse`).

    Args:
        status: the HTTP status.
        json: a body to send as JSON (sets ``Content-Type: application/json``).
        body: the raw body bytes otherwise.
        headers: more headers (any case).
        chunk_size: split the body into chunks of this size when streamed.
    """

    def __init__(
        self,
        status: int = 200,
        *,
        json: Any = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        merged = dict(headers or {})
        if json is not None:
            body = _json.dumps(json).encode()
            merged.setdefault("Content-Type", "application/json")
        self.status = status
        self.headers: Mapping[str, str] = _Headers(merged)
        self._body = body
        self.content_length: int | None = len(body)
        self._chunk_size = chunk_size
        self.closed = False

    def __repr__(self) -> str:
        return f"MockResponse({self.status}, {len(self._body)} bytes)"

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        step = min(size, self._chunk_size or size)
        for start in range(0, len(self._body), step):
            yield self._body[start : start + step]

    def close(self) -> None:
        self.closed = True


class RecordedRequest:
    """One request the mock received. Headers and body are kept but never shown."""

    __slots__ = ("body", "headers", "method", "operation", "params", "parts", "path", "url")

    def __init__(self, request: TransportRequest) -> None:
        self.method = request.method
        self.url = request.url
        self.path = urlsplit(request.url).path
        self.headers: Mapping[str, str] = _Headers(request.headers)
        self.body = request.body
        self.parts: tuple[BodyPart, ...] = request.parts
        self.params = dict(request.params or {})
        self.operation = request.operation

    def json(self) -> Any:
        """The JSON body, decoded."""
        return _json.loads(self.body or b"null")

    def __repr__(self) -> str:  # the token and the body stay out of test output
        return f"RecordedRequest({self.method} {self.path}, operation={self.operation!r})"


class MockTransport:
    """A :class:`~qes_async.Transport` in memory.

    Script answers per method and path with :meth:`add`; each call takes the next
    scripted answer, and the last one repeats. An answer is a :class:`MockResponse`, a
    :class:`~qes_async.TransportError` to raise (``sent=False``: nothing reached the
    service; ``sent=True``: the answer was lost), or a callable (sync or async) given the
    :class:`RecordedRequest` that returns either. The token endpoint answers with a
    fresh token by itself unless scripted. Every request is kept in :attr:`requests`.

    A request nothing was scripted for raises ``AssertionError`` naming it.
    """

    def __init__(self, *, auto_token: bool = True) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: dict[tuple[str, str], list[Any]] = {}
        self._auto_token = auto_token
        self._tokens = 0
        self.closed = False

    def add(self, method: str, path: str, *answers: Any) -> MockTransport:
        """Script the answers to ``method path`` (a path as sent, ids filled in)."""
        if not answers:
            raise ValueError("give at least one answer")
        self._script.setdefault((method.upper(), path), []).extend(answers)
        return self

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The recorded requests, optionally only those to ``method`` and ``path``."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and (path is None or r.path == path)
        ]

    async def send(self, request: TransportRequest) -> MockResponse:
        if self.closed:
            raise TransportError("the mock transport is closed", sent=False)
        recorded = RecordedRequest(request)
        self.requests.append(recorded)
        queue = self._script.get((recorded.method, recorded.path))
        if queue is None:
            if self._auto_token and recorded.operation == Operation.CREATE_TOKEN:
                return self._token()
            raise AssertionError(f"MockTransport: no answer scripted for {recorded!r}")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer) and not isinstance(answer, MockResponse):
            answer = answer(recorded)
            if inspect.isawaitable(answer):
                answer = await answer
        if isinstance(answer, TransportError):
            raise answer
        if not isinstance(answer, MockResponse):
            raise TypeError(f"MockTransport: an answer must be a MockResponse, not {answer!r}")
        return answer

    def _token(self) -> MockResponse:
        self._tokens += 1
        return MockResponse(
            200,
            json={
                "access_token": f"mock-token-{self._tokens}-{time.monotonic_ns()}",
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )

    async def aclose(self) -> None:
        self.closed = True
