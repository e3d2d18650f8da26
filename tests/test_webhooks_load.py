"""The aiohttp WebhookReceiver over loopback, under junk and under load.

Every malformed or unauthenticated request gets its 4xx (never a 500, never a crash, and
the receiver keeps serving); 1,000 concurrent authenticated deliveries are all answered 204
and all published to the dispatcher, each to its own signature's mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import register_secret

from qes_async import FakeClock, Status, WebhookDispatcher
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver

USER, PASSWORD = "fourthline", "hook-password-9c2e"
SID = "0b7e4a52-0000-4000-8000-00000000abcd"
PATH = f"/fourthline/qes/{SID}"
MAX_BODY = 4096
GUARD = 30.0  # seconds: a hang guard only
DELIVERIES = 1_000


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH = {"Authorization": basic()}
JSON = {"Content-Type": "application/json"}
GOOD = json.dumps({"signatureId": SID, "status": "signed"}).encode()


class Served:
    """A receiver served over loopback, with its dispatcher and a client session."""

    def __init__(self, receiver: WebhookReceiver, server: TestServer, session: Any) -> None:
        self.receiver = receiver
        self.dispatcher = receiver.dispatcher
        self.server = server
        self.session: aiohttp.ClientSession = session

    async def send(
        self, method: str, path: str, headers: dict[str, str], data: Any = None
    ) -> tuple[int, bytes]:
        url = self.server.make_url(path)
        request = self.session.request(method, url, headers=headers, data=data)
        async with request as response:
            return response.status, await response.read()


async def serve(auth: BasicAuth | BearerAuth) -> AsyncIterator[Served]:
    register_secret(PASSWORD)
    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, auth, max_body=MAX_BODY)
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        TestServer(receiver.aiohttp_app()) as server,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        yield Served(receiver, server, session)


@pytest.fixture
async def basic_served() -> AsyncIterator[Served]:
    async for served in serve(BasicAuth(USER, PASSWORD)):
        yield served


@pytest.fixture
async def bearer_served() -> AsyncIterator[Served]:
    async for served in serve(BearerAuth(USER, PASSWORD)):
        yield served


async def chunks(size: int) -> AsyncIterator[bytes]:
    """A body of ``size`` bytes sent chunked (no Content-Length to refuse it early)."""
    for _ in range(size // 1024):
        yield b"x" * 1024


def envelope(**fields: object) -> bytes:
    return json.dumps({"signatureId": SID, "status": "signed", **fields}).encode()


JUNK: list[tuple[str, str, str, dict[str, str], Any, int]] = [
    # (case, method, path, headers, body, expected status)
    ("no auth", "POST", PATH, JSON, GOOD, 401),
    ("wrong password", "POST", PATH, {**JSON, "Authorization": basic(USER, "nope")}, GOOD, 401),
    ("wrong user", "POST", PATH, {**JSON, "Authorization": basic("x", PASSWORD)}, GOOD, 401),
    ("empty basic", "POST", PATH, {**JSON, "Authorization": "Basic "}, GOOD, 401),
    ("basic not base64", "POST", PATH, {**JSON, "Authorization": "Basic %%%"}, GOOD, 401),
    ("basic no colon", "POST", PATH, {**JSON, "Authorization": "Basic Zm9v"}, GOOD, 401),
    ("bearer instead", "POST", PATH, {**JSON, "Authorization": "Bearer abc"}, GOOD, 401),
    ("odd scheme", "POST", PATH, {**JSON, "Authorization": "Digest x=1"}, GOOD, 401),
    ("bad json", "POST", PATH, {**JSON, **AUTH}, b"{not json", 400),
    ("not utf-8", "POST", PATH, {**JSON, **AUTH}, b'{"status": "\xff"}', 400),
    ("empty body", "POST", PATH, {**JSON, **AUTH}, b"", 400),
    ("json array", "POST", PATH, {**JSON, **AUTH}, b"[1, 2]", 400),
    ("json string", "POST", PATH, {**JSON, **AUTH}, b'"signed"', 400),
    ("text/plain", "POST", PATH, {"Content-Type": "text/plain", **AUTH}, GOOD, 415),
    ("form", "POST", PATH, {"Content-Type": "multipart/form-data", **AUTH}, GOOD, 415),
    ("octet-stream", "POST", PATH, {"Content-Type": "application/octet-stream", **AUTH}, GOOD, 415),
    ("oversized", "POST", PATH, {**JSON, **AUTH}, b"x" * (MAX_BODY + 1), 413),
    ("oversized chunked", "POST", PATH, {**JSON, **AUTH}, "chunked", 413),
    ("mismatched id", "POST", PATH, {**JSON, **AUTH}, envelope(signatureId="other"), 422),
    ("id not a string", "POST", PATH, {**JSON, **AUTH}, envelope(signatureId=7), 422),
    ("no status", "POST", PATH, {**JSON, **AUTH}, json.dumps({"signatureId": SID}).encode(), 422),
    ("empty status", "POST", PATH, {**JSON, **AUTH}, envelope(status=""), 422),
    ("status object", "POST", PATH, {**JSON, **AUTH}, envelope(status={"a": 1}), 422),
    ("code as text", "POST", PATH, {**JSON, **AUTH}, envelope(statusCode="50x1"), 422),
    ("code as bool", "POST", PATH, {**JSON, **AUTH}, envelope(statusCode=True), 422),
    ("GET", "GET", PATH, AUTH, None, 405),
    ("PUT", "PUT", PATH, {**JSON, **AUTH}, GOOD, 405),
    ("DELETE", "DELETE", PATH, AUTH, None, 405),
    ("PATCH", "PATCH", PATH, {**JSON, **AUTH}, GOOD, 405),
    ("unknown path", "POST", "/webhooks/other", {**JSON, **AUTH}, GOOD, 404),
    ("prefix only", "POST", "/fourthline/qes", {**JSON, **AUTH}, GOOD, 404),
    ("extra segment", "POST", f"{PATH}/extra", {**JSON, **AUTH}, GOOD, 404),
    ("token path on basic", "POST", "/fourthline/qes/oauth2/token", AUTH, b"", 404),
    ("root", "GET", "/", {}, None, 404),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "headers", "body", "expected"), JUNK, ids=[c[0] for c in JUNK]
)
async def test_junk_gets_its_4xx_and_publishes_nothing(
    basic_served: Served,
    captured_logs: list[logging.LogRecord],
    case: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    expected: int,
) -> None:
    data = chunks(MAX_BODY * 4) if body == "chunked" else body
    status, _ = await asyncio.wait_for(basic_served.send(method, path, headers, data), GUARD)
    assert status == expected
    assert basic_served.dispatcher.published == 0
    # The receiver keeps serving, and never fell back on its "unexpected" path.
    status, _ = await basic_served.send("POST", PATH, {**JSON, **AUTH}, GOOD)
    assert status == 204
    assert basic_served.dispatcher.published == 1
    assert [r.getMessage() for r in captured_logs if r.levelno >= logging.ERROR] == []


BEARER_JUNK: list[tuple[str, str, str, dict[str, str], Any, int]] = [
    ("no token", "POST", PATH, JSON, GOOD, 401),
    ("unknown token", "POST", PATH, {**JSON, "Authorization": "Bearer not-issued"}, GOOD, 401),
    ("basic on webhook", "POST", PATH, {**JSON, **AUTH}, GOOD, 401),
    ("token via GET", "GET", "/fourthline/qes/oauth2/token", AUTH, None, 405),
    ("token wrong creds", "POST", "/fourthline/qes/oauth2/token",
     {"Authorization": basic(USER, "nope")}, b"grant_type=client_credentials", 401),
    ("token no creds", "POST", "/fourthline/qes/oauth2/token", {}, b"", 401),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "headers", "body", "expected"),
    BEARER_JUNK,
    ids=[c[0] for c in BEARER_JUNK],
)
async def test_bearer_junk_gets_its_4xx(
    bearer_served: Served,
    case: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    expected: int,
) -> None:
    status, _ = await asyncio.wait_for(bearer_served.send(method, path, headers, body), GUARD)
    assert status == expected
    assert bearer_served.dispatcher.published == 0


async def test_a_thousand_concurrent_deliveries_are_all_accepted_and_published(
    basic_served: Served,
) -> None:
    ids = [f"sig-{number:05d}" for number in range(DELIVERIES)]
    statuses = ["pending", "confirmation_required", "signed", "error"]
    # Half the signatures have a waiter already; the other half's events are kept for later.
    mailboxes = {sid: basic_served.dispatcher.subscribe(sid) for sid in ids[::2]}

    async def deliver(number: int, sid: str) -> int:
        body = {"signatureId": sid, "status": statuses[number % 4], "statusCode": number}
        status, _ = await basic_served.send(
            "POST", f"/fourthline/qes/{sid}", {**JSON, **AUTH}, json.dumps(body).encode()
        )
        return status

    answers = await asyncio.wait_for(
        asyncio.gather(*(deliver(number, sid) for number, sid in enumerate(ids))), GUARD
    )
    assert answers == [204] * DELIVERIES
    dispatcher = basic_served.dispatcher
    assert (dispatcher.published, dispatcher.dropped) == (DELIVERIES, 0)
    assert basic_served.receiver.accepted == DELIVERIES
    assert basic_served.receiver.refused == 0
    assert dispatcher.pending_count == DELIVERIES // 2
    received = {}
    for sid in ids:
        subscription = mailboxes.pop(sid, None) or dispatcher.subscribe(sid)
        with subscription:
            received[sid] = [(e.status, e.status_code) for e in subscription.drain()]
    expected = {sid: [(Status(statuses[number % 4]), number)] for number, sid in enumerate(ids)}
    assert received == expected
