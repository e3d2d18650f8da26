"""Shared test fixtures.

Every test's log records are captured (every logger, DEBUG and up, the ``qes_async`` logger
switched to DEBUG) and the test fails if any record, formatted with its traceback, contains a
registered secret. Register the secrets a test uses with :func:`register_secret` (import it
from ``conftest``) or the ``secrets_registry`` fixture::

    from conftest import register_secret

    register_secret(client_secret, "+31612345678", passcode)

Other texts a test produces (the spans and metrics it exported) are searched too once they
are declared with :func:`register_texts`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import pytest

_SECRETS: set[str] = set()
_TEXT_SOURCES: list[Callable[[], Iterable[str]]] = []
# Strings shorter than this match by accident (timestamps, ids), so they are refused.
MIN_SECRET_LENGTH = 4


def register_secret(*values: str | bytes) -> None:
    """Declare values that must never appear in any log record of the current test."""
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if len(text) < MIN_SECRET_LENGTH:
            raise ValueError(f"secrets shorter than {MIN_SECRET_LENGTH} characters are refused")
        _SECRETS.add(text)


def register_texts(source: Callable[[], Iterable[str]]) -> None:
    """Declare more texts to search for the registered secrets when the test ends (called
    then, after every other fixture finished): e.g. every exported span and metric."""
    _TEXT_SOURCES.append(source)


def registered_secrets() -> frozenset[str]:
    """The secrets registered so far in the current test."""
    return frozenset(_SECRETS)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        return [self.format(record) for record in self.records]


@pytest.fixture
def secrets_registry() -> Callable[..., None]:
    """The :func:`register_secret` function, as a fixture."""
    return register_secret


@pytest.fixture
def captured_logs() -> list[logging.LogRecord]:
    """The log records captured so far in this test (the autouse capture's list)."""
    return _CURRENT.records if _CURRENT is not None else []


_CURRENT: _Capture | None = None


@pytest.fixture(autouse=True)
def _no_secrets_in_logs() -> Iterator[None]:
    """Capture every log record of the test; fail the test if one holds a secret."""
    global _CURRENT
    _SECRETS.clear()
    _TEXT_SOURCES.clear()
    capture = _Capture()
    root = logging.getLogger()
    ours = logging.getLogger("qes_async")
    old_root, old_ours = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    _CURRENT = capture
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(old_root)
        ours.setLevel(old_ours)
        _CURRENT = None
    texts = capture.texts() + [text for source in _TEXT_SOURCES for text in source()]
    leaks = [(secret, text) for text in texts for secret in _SECRETS if secret in text]
    _SECRETS.clear()
    _TEXT_SOURCES.clear()
    if leaks:
        secret, text = leaks[0]
        pytest.fail(
            f"{len(leaks)} log record(s) or exported texts leak a registered secret "
            f"({len(secret)} chars); first: {text.replace(secret, '<SECRET>')[:300]!r}",
            pytrace=False,
        )


# --------------------------------------------------------------------- a scriptable server

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-s3cr3t"
ACCESS_TOKEN = "tok-ACCESS-0001"


def _params_key() -> object:
    from aiohttp import web

    return web.RequestKey("params", dict)


PARAMS: Any = _params_key()


class FakeAPI:
    """A loopback aiohttp server with a token endpoint and the handlers a test adds.

    Handlers can be added while it runs (one catch-all route dispatches). A handler gets the
    ``web.Request``; path parameters are in ``request[PARAMS]``. ``tokens_issued`` counts
    token requests; ``calls`` lists ``(method, path)`` of every other request, in order;
    ``sleeps`` collects the waits the client asked for. Set ``token_handler`` to replace
    the token endpoint.
    """

    def __init__(self) -> None:
        from aiohttp import web

        self.app = web.Application(client_max_size=200 * 1024 * 1024)
        self.tokens_issued = 0
        self.token_prefix = "tok-ACCESS-"
        self.expires_in: int | None = 3600
        self.calls: list[tuple[str, str]] = []
        self.sleeps: list[float] = []
        self.server: object = None
        self.token_handler: Callable[..., object] | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., object]]] = []
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def _token(self, request: object) -> object:
        from aiohttp import web

        assert isinstance(request, web.Request)
        body = await request.json()
        if body.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"code": "invalid_client"}, status=401)
        self.tokens_issued += 1
        answer: dict[str, object] = {
            "access_token": f"{self.token_prefix}{self.tokens_issued:04d}",
            "token_type": "Bearer",
        }
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return web.json_response(answer)

    async def _dispatch(self, request: object) -> object:
        from aiohttp import web

        assert isinstance(request, web.Request)
        if request.method == "POST" and request.path == "/v1/oauth2/token":
            if self.token_handler is None:
                return await self._token(request)
            handler: Callable[..., object] = self.token_handler
        else:
            for method, pattern, candidate in self._routes:
                match = pattern.fullmatch(request.path)
                if match and method == request.method:
                    request[PARAMS] = match.groupdict()
                    handler = candidate
                    self.calls.append((request.method, request.path))
                    break
            else:
                return web.json_response({"code": "no_route"}, status=404)
        result = handler(request)
        if hasattr(result, "__await__"):
            result = await result
        return result

    def add(self, method: str, path: str, handler: Callable[..., object]) -> None:
        """Serve ``handler`` for ``method path`` (``{name}`` matches one path segment)."""
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._routes.append((method, re.compile(regex), handler))

    async def sleep(self, seconds: float) -> None:
        """An injected sleep that records and returns at once."""
        self.sleeps.append(seconds)

    def client(self, **kw: object) -> object:
        """A QESClient aimed at this server, with exact (unjittered) backoff."""
        from qes_async import QESClient, RetryPolicy

        assert self.server is not None
        kw.setdefault("retry", RetryPolicy(jitter=None))
        kw.setdefault("sleep", self.sleep)
        return QESClient(
            CLIENT_ID,
            CLIENT_SECRET,
            base_url=str(self.server.make_url("")).rstrip("/"),  # type: ignore[attr-defined]
            **kw,  # type: ignore[arg-type]
        )


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAPI]:
    """A running :class:`FakeAPI`; add handlers before the first request."""
    from aiohttp.test_utils import TestServer

    api = FakeAPI()
    register_secret(CLIENT_SECRET, ACCESS_TOKEN[:-1])
    server = TestServer(api.app)
    await server.start_server()
    api.server = server
    try:
        yield api
    finally:
        await server.close()


# Tests that start worker processes, a PostgreSQL cluster or hundreds of flows with real
# timeouts share one xdist worker, so that on a 2-core machine two of them never compete
# for the CPU at once (their waits are real seconds); light tests run on the other worker.
_HEAVY = ("tests/postgres/", "tests/test_chaos.py", "tests/test_crash_resume.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in item.nodeid for part in _HEAVY):
            item.add_marker(pytest.mark.xdist_group("heavy"))
