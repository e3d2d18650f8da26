"""Webhook delivery with Basic and Bearer auth, redelivery, and the webhook fault knobs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from sandbox_helpers import Api, api, clock, sandbox

from qes_async import FakeClock
from qes_async.sandbox import Fault, SandboxServer

__all__ = ["api", "clock", "sandbox"]
BASIC = ("hook-user", "hook-password")


class Receiver:
    """A tiny integrator: a webhook endpoint and an OAuth token endpoint."""

    def __init__(self) -> None:
        self.hooks: list[tuple[str, dict[str, Any], str]] = []
        self.token_requests: list[tuple[str, dict[str, str]]] = []
        self.answers: list[int] = []
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        self.hooks.append(
            (
                request.match_info["sid"],
                await request.json(),
                request.headers.get("Authorization", ""),
            )
        )
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests.append(
            (request.headers.get("Authorization", ""), {k: str(v) for k, v in form.items()})
        )
        return web.json_response(
            {"access_token": "integrator-token", "token_type": "Bearer", "expires_in": 3600}
        )

    def statuses(self) -> list[str]:
        return [body["status"] for _, body, _ in self.hooks]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{sid}", rec.hook)
    app.router.add_post("/oauth/token", rec.token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_basic_webhooks_on_every_status_change(
    api: Api, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks/", basic=BASIC)
    sid = await api.to_signed()
    await until(lambda: len(receiver.hooks) == 5)
    assert receiver.statuses() == [
        "new",
        "pending",
        "user_consent_required",
        "confirmation_required",
        "signed",
    ]
    assert {(s, auth) for s, _, auth in receiver.hooks} == {(sid, basic_header(*BASIC))}
    assert receiver.hooks[-1][1] == {
        "signatureId": sid,
        "status": "signed",
        "statusCode": None,
        "errors": [],
    }


async def test_bearer_webhooks_fetch_a_token_from_the_auth_url_once(
    clock: FakeClock, receiver: Receiver
) -> None:
    import aiohttp

    bearer = (receiver.url + "/oauth/token", *BASIC)
    async with (
        SandboxServer(
            clock=clock, webhook_url=receiver.url + "/hooks", webhook_bearer=bearer
        ) as sb,
        aiohttp.ClientSession() as session,
    ):
        await Api(sb, session).create()
        await until(lambda: len(receiver.hooks) == 2)
    assert receiver.token_requests == [(basic_header(*BASIC), {"grant_type": "client_credentials"})]
    assert {auth for _, _, auth in receiver.hooks} == {"Bearer integrator-token"}


async def test_non_2xx_is_redelivered_with_backoff_on_the_clock(
    clock: FakeClock, receiver: Receiver
) -> None:
    import aiohttp

    receiver.answers = [500, 503]
    async with (
        SandboxServer(clock=clock, webhook_url=receiver.url + "/hooks", webhook_backoff=10) as sb,
        aiohttp.ClientSession() as session,
    ):
        sb.webhook_faults.script(["ok", "drop"])  # only "new" is delivered
        await Api(sb, session).create()
        await until(lambda: len(sb.webhook_deliveries) == 2)
        await asyncio.sleep(0.05)
        assert len(receiver.hooks) == 1
        clock.advance(10)
        await until(lambda: len(receiver.hooks) == 2)
        clock.advance(19)
        await asyncio.sleep(0.05)
        assert len(receiver.hooks) == 2
        clock.advance(1)
        await until(lambda: len(receiver.hooks) == 3)
        await until(lambda: len(sb.webhook_deliveries) == 4)
        attempts = [(d.status, d.attempt, d.http_status, d.fault) for d in sb.webhook_deliveries]
    assert sorted(attempts, key=lambda a: (a[0], a[1])) == [
        ("new", 1, 500, None),
        ("new", 2, 503, None),
        ("new", 3, 200, None),
        ("pending", 0, None, "drop"),
    ]


async def test_drop_and_duplicate(api: Api, sandbox: SandboxServer, receiver: Receiver) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.script(["drop", "duplicate"])
    await api.create()
    await until(lambda: len(receiver.hooks) == 2)
    await asyncio.sleep(0.05)
    assert receiver.statuses() == ["pending", "pending"]


async def test_delay_holds_a_webhook_until_the_clock_reaches_it(
    api: Api, sandbox: SandboxServer, receiver: Receiver, clock: FakeClock
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.script([Fault("delay", delay=60)])
    await api.create()
    await until(lambda: len(receiver.hooks) == 1)
    assert receiver.statuses() == ["pending"]
    clock.advance(60)
    await until(lambda: len(receiver.hooks) == 2)
    assert receiver.statuses() == ["pending", "new"]


async def test_reorder_sends_a_webhook_after_the_next_one(
    api: Api, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.script(["reorder"])
    sid = await api.create()
    await until(lambda: len(receiver.hooks) == 2)
    await asyncio.sleep(0.05)
    assert receiver.statuses() == ["pending", "new"]
    assert next(d.fault for d in sandbox.webhook_deliveries if d.signature_id == sid) == "reorder"


async def test_a_reordered_last_webhook_is_sent_after_the_hold_not_lost(
    api: Api, sandbox: SandboxServer, receiver: Receiver, clock: FakeClock
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.script(["ok", "reorder"])  # "new" goes out, "pending" is held
    await api.create()
    await until(lambda: len(receiver.hooks) == 1)
    await asyncio.sleep(0.05)
    assert receiver.statuses() == ["new"]  # nothing follows "pending" to release it
    clock.advance(30)
    await until(lambda: len(receiver.hooks) == 2)
    assert receiver.statuses() == ["new", "pending"]


async def test_webhook_faults_by_status_name(
    api: Api, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.add("drop", route="new")
    await api.to_consent()
    await until(lambda: len(receiver.hooks) == 2)
    await asyncio.sleep(0.05)
    assert receiver.statuses() == ["pending", "user_consent_required"]


async def test_a_burst_of_deliveries_queues_without_timing_out(clock: FakeClock) -> None:
    """More deliveries than pooled connections wait their turn: only the receiver's own
    slowness counts against the timeout, so a burst is delivered at the first attempt."""
    answered = 0

    async def slow_hook(request: web.Request) -> web.Response:
        nonlocal answered
        await asyncio.sleep(0.4)  # well within the timeout, but three waves of them are not
        answered += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/{sid}", slow_hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    try:
        async with SandboxServer(clock=clock, webhook_timeout=1.0, seed=3) as sb:
            sb.configure_webhooks(f"http://127.0.0.1:{runner.addresses[0][1]}/hooks")
            burst = 300  # three times the pool of 100 connections
            for n in range(burst):
                sb.webhooks.notify({"signatureId": f"sig-{n}", "status": "pending"})
            for _ in range(1000):  # up to 10 s on a loaded machine; 1.2 s when idle
                if len(sb.webhook_deliveries) >= burst:
                    break
                await asyncio.sleep(0.01)
            failed = [d for d in sb.webhook_deliveries if d.http_status != 204]
            assert failed == []
            assert {d.attempt for d in sb.webhook_deliveries} == {1}
            assert answered == burst
    finally:
        await runner.cleanup()


async def test_a_second_reorder_is_held_its_full_time_not_released_by_an_old_timer(
    sandbox: SandboxServer, receiver: Receiver, clock: FakeClock
) -> None:
    sandbox.configure_webhooks(receiver.url + "/hooks", basic=BASIC)
    sandbox.webhook_faults.script(["reorder", "ok", "reorder"])
    start = clock.time()

    def change(status: str) -> None:
        sandbox.webhooks.notify({"signatureId": "sig-r", "status": status})

    change("a")  # held, with a 30 s timer
    clock.advance(1)
    change("b")  # goes out, and takes "a" with it
    await until(lambda: len(receiver.hooks) == 2)
    clock.advance(28)
    change("c")  # held at t=29: it is due at t=59
    clock.advance(1)  # t=30, when the first hold's timer would have fired
    await asyncio.sleep(0.1)
    assert receiver.statuses() == ["b", "a"]
    clock.advance(29)
    await until(lambda: len(receiver.hooks) == 3)
    assert receiver.statuses() == ["b", "a", "c"]
    assert clock.time() == start + 59


async def test_a_status_change_after_close_sends_nothing(
    receiver: Receiver, clock: FakeClock
) -> None:
    async with SandboxServer(clock=clock, webhook_url=receiver.url + "/hooks") as sb:
        pass
    sb.webhooks.notify({"signatureId": "sig-late", "status": "pending"})  # e.g. a late timer
    await asyncio.sleep(0.05)
    assert sb.webhook_deliveries == []
    assert receiver.hooks == []
