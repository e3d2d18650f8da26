"""End to end: the sandbox delivers real webhooks over loopback to our receiver, whose
dispatcher feeds the waiters; QESClient re-reads the status from the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestServer
from conftest import register_secret

from qes_async import (
    FakeClock,
    HybridWaiter,
    KYCRequiredError,
    QESClient,
    Status,
    StatusReport,
    WaitTimeoutError,
    WebhookDispatcher,
    WebhookWaiter,
)
from qes_async.sandbox import IdentityCase, SandboxServer, WebhookDelivery
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver

USER, PASSWORD = "fourthline", "sandbox-hook-pw-93c1"
HOUR = 3600.0


class CountingClient:
    """QESClient, counting status reads once they are answered.

    Counting on the way in would race: a test that waits for the first read and then
    advances the clock could move time while that read is still on the wire, and the
    sandbox would answer with the later status.
    """

    def __init__(self, client: QESClient) -> None:
        self.client = client
        self.reads = 0

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        try:
            return await self.client.get_signature_status(signature_id)
        finally:
            self.reads += 1


class World:
    def __init__(
        self,
        clock: FakeClock,
        dispatcher: WebhookDispatcher,
        receiver_url: str,
        token_url: str,
    ) -> None:
        self.clock = clock
        self.dispatcher = dispatcher
        self.receiver_url = receiver_url
        self.token_url = token_url
        self.sandbox: SandboxServer
        self.client: CountingClient

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (real time, at most 5 s) for a condition that loopback traffic will meet."""
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not met within 5 s")

    def attempts(self) -> int:
        return len(self.sandbox.webhook_deliveries)


@asynccontextmanager
async def start_world(
    auth: BasicAuth | BearerAuth, *, processing_delay: float = 10.0
) -> AsyncIterator[World]:
    register_secret(PASSWORD)
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    receiver = WebhookReceiver(dispatcher, auth)
    async with TestServer(receiver.aiohttp_app()) as server:
        world = World(
            clock,
            dispatcher,
            str(server.make_url(receiver.prefix)),
            str(server.make_url(receiver.token_path)),
        )
        async with SandboxServer(clock=clock, processing_delay=processing_delay, seed=1) as sb:
            sb.add_client("risky", IdentityCase(risk_score=500))
            async with QESClient(
                sb.client_id, sb.client_secret, base_url=sb.url, clock=clock
            ) as client:
                world.sandbox = sb
                world.client = CountingClient(client)
                yield world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with start_world(BasicAuth(USER, PASSWORD)) as w:
        w.sandbox.configure_webhooks(w.receiver_url, basic=(USER, PASSWORD))
        yield w


async def create(world: World, reference: str = "client-1") -> str:
    workflow = await world.client.client.create_workflow(reference)
    return workflow.signature_id


def deliveries(world: World, status: str) -> list[WebhookDelivery]:
    return [d for d in world.sandbox.webhook_deliveries if d.status == status]


async def test_basic_auth_webhook_releases_a_hybrid_waiter_without_polling(world: World) -> None:
    start = world.clock.time()
    sid = await create(world)
    await world.until(lambda: world.dispatcher.published == 1)  # the "new" webhook
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(waiter.wait_for(sid, {"pending"}, deadline=start + 2 * HOUR))
    await world.until(lambda: world.client.reads == 1)
    world.clock.advance(10)  # the sandbox decides eligibility; its webhook does the rest
    report = await task
    assert report.status is Status.PENDING
    assert world.clock.time() == start + 10
    assert world.client.reads == 2  # the start, then one re-read for the webhook
    await world.until(lambda: bool(deliveries(world, "pending")))  # recorded after the answer
    assert [d.http_status for d in deliveries(world, "pending")] == [204]


async def test_event_before_the_wait_is_used(world: World) -> None:
    sid = await create(world)
    world.clock.advance(10)
    await world.until(lambda: world.dispatcher.published == 2)  # "new", then "pending"
    assert world.dispatcher.pending_count == 1
    waiter = WebhookWaiter(world.client, world.dispatcher)
    report = await waiter.wait_for(sid, {"pending"}, deadline=world.clock.time() + 60)
    assert report.status is Status.PENDING
    assert world.dispatcher.pending_count == 0


async def test_wrong_basic_password_is_refused_and_nothing_is_dispatched(world: World) -> None:
    world.sandbox.configure_webhooks(world.receiver_url, basic=(USER, "not-the-password"))
    await create(world)
    await world.until(lambda: world.attempts() >= 1)
    statuses = {d.http_status for d in world.sandbox.webhook_deliveries}
    assert statuses == {401}
    assert world.dispatcher.published == 0


async def test_missing_credentials_are_refused(world: World) -> None:
    world.sandbox.configure_webhooks(world.receiver_url)
    await create(world)
    await world.until(lambda: world.attempts() >= 1)
    assert {d.http_status for d in world.sandbox.webhook_deliveries} == {401}
    assert world.dispatcher.published == 0


async def test_bearer_auth_token_fetched_from_our_auth_url_is_accepted() -> None:
    async with start_world(BearerAuth(USER, PASSWORD)) as w:
        w.sandbox.configure_webhooks(
            w.receiver_url,
            bearer=(w.token_url, USER, PASSWORD),
        )
        sid = await create(w)
        waiter = HybridWaiter(w.client, w.dispatcher, safety_interval=HOUR)
        task = asyncio.create_task(
            waiter.wait_for(sid, {"pending"}, deadline=w.clock.time() + HOUR)
        )
        await w.until(lambda: w.client.reads >= 1)
        w.clock.advance(10)
        assert (await task).status is Status.PENDING
        # The receiver publishes before it answers, so the waiter may be released before
        # the sandbox has recorded the delivery's answer.
        await w.until(lambda: w.attempts() >= 1)
        assert {d.http_status for d in w.sandbox.webhook_deliveries} == {204}


async def test_bearer_with_wrong_credentials_gets_no_token_and_no_event() -> None:
    async with start_world(BearerAuth(USER, PASSWORD)) as w:
        w.sandbox.configure_webhooks(
            w.receiver_url,
            bearer=(w.token_url, USER, "wrong-password-x"),
        )
        await create(w)
        await w.until(lambda: w.attempts() >= 1)
        assert w.dispatcher.published == 0
        assert {d.http_status for d in w.sandbox.webhook_deliveries} == {None}


async def test_dropped_webhook_costs_one_safety_interval(world: World) -> None:
    world.sandbox.webhook_faults.add("drop")
    start = world.clock.time()
    sid = await create(world)
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=300)
    task = asyncio.create_task(waiter.wait_for(sid, {"pending"}, deadline=start + HOUR))
    await world.until(lambda: world.client.reads == 1)
    world.clock.advance(10)
    for _ in range(20):
        await asyncio.sleep(0)
    assert world.sandbox.signature(sid).status == "pending"
    assert not task.done()
    world.clock.advance(290)
    assert (await task).status is Status.PENDING
    assert world.clock.time() == start + 300
    assert world.dispatcher.published == 0


async def test_duplicated_webhooks_still_arrive_at_the_status(world: World) -> None:
    world.sandbox.webhook_faults.add("duplicate")
    sid = await create(world)
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(
        waiter.wait_for(sid, {"pending"}, deadline=world.clock.time() + HOUR)
    )
    await world.until(lambda: world.client.reads >= 1)
    world.clock.advance(10)
    assert (await task).status is Status.PENDING
    await world.until(lambda: len(deliveries(world, "pending")) == 2)
    assert {d.http_status for d in deliveries(world, "pending")} == {204}


async def test_delayed_webhook_releases_the_waiter_when_it_lands(world: World) -> None:
    world.sandbox.webhook_faults.add("delay", delay=30)
    start = world.clock.time()
    sid = await create(world)
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(waiter.wait_for(sid, {"pending"}, deadline=start + 2 * HOUR))
    await world.until(lambda: world.client.reads == 1)
    world.clock.advance(10)
    for _ in range(5):
        await asyncio.sleep(0)  # the delivery task arms its 30 s delay
    assert world.attempts() == 0
    assert not task.done()
    world.clock.advance(30)
    assert (await task).status is Status.PENDING
    assert world.clock.time() == start + 40


async def test_reordered_late_webhook_never_moves_the_waiter_backwards(world: World) -> None:
    # "new" is held back and lands after "pending": the last webhook says "new".
    world.sandbox.webhook_faults.script(["reorder", "ok"])
    start = world.clock.time()
    sid = await create(world)
    world.clock.advance(10)

    def arrived() -> list[str]:
        records = world.sandbox.webhook_deliveries
        return [d.status for d in records if d.http_status == 204]

    await world.until(lambda: len(arrived()) == 2)
    assert arrived() == ["pending", "new"]
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(waiter.wait_for(sid, {"user_consent_required"}, deadline=start + 60))
    await world.until(lambda: world.client.reads == 1)
    world.clock.advance(50)
    with pytest.raises(WaitTimeoutError) as caught:
        await task
    assert caught.value.last is not None
    assert caught.value.last.status is Status.PENDING


async def test_kyc_required_fails_fast_through_a_webhook(world: World) -> None:
    start = world.clock.time()
    sid = await create(world, "risky")
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(waiter.wait_for(sid, {"pending"}, deadline=start + HOUR))
    await world.until(lambda: world.client.reads >= 1)
    world.clock.advance(10)
    with pytest.raises(KYCRequiredError) as caught:
        await task
    assert caught.value.status_codes == (1201,)
    assert world.clock.time() == start + 10


async def test_deadline_reached_raises_the_typed_error(world: World) -> None:
    start = world.clock.time()
    sid = await create(world)
    waiter = HybridWaiter(world.client, world.dispatcher, safety_interval=HOUR)
    task = asyncio.create_task(waiter.wait_for(sid, {"signed"}, deadline=start + 120))
    await world.until(lambda: world.client.reads >= 1)
    world.clock.advance(10)
    await world.until(lambda: world.dispatcher.published == 2)
    world.clock.advance(110)
    with pytest.raises(WaitTimeoutError) as caught:
        await task
    assert caught.value.last is not None
    assert caught.value.last.status is Status.PENDING
    assert caught.value.targets == ("signed",)
