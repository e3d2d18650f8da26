"""WebhookWaiter and HybridWaiter against a settable status source and a FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from qes_async import (
    FakeClock,
    HybridWaiter,
    InvalidInputError,
    KYCRequiredError,
    RateLimitedError,
    Status,
    StatusReport,
    StatusWaiter,
    WaitTimeoutError,
    WebhookDispatcher,
    WebhookEvent,
    WebhookWaiter,
)

SID = "sig-1"


class Source:
    """Reports whatever status is set; a queue of scripted answers goes first."""

    def __init__(self, status: str = "new") -> None:
        self.status: dict[str, str] = {}
        self.default = status
        self.script: list[str | Exception] = []
        self.reads = 0

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        self.reads += 1
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            status = answer
        else:
            status = self.status.get(signature_id, self.default)
        return StatusReport(signature_id=signature_id, status=Status(status))


def webhook(signature_id: str, status: str) -> WebhookEvent:
    return WebhookEvent(signature_id=signature_id, status=Status(status))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_waiters_satisfy_the_protocol() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    assert isinstance(WebhookWaiter(Source(), dispatcher), StatusWaiter)
    assert isinstance(HybridWaiter(Source(), dispatcher), StatusWaiter)


async def test_webhook_triggers_a_status_re_read_before_acting() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(SID, {"signed"}, deadline=clock.time() + 60)
    )
    await settle()
    assert source.reads == 1
    # The webhook says signed, but the service does not yet: the waiter trusts the read.
    dispatcher.publish(webhook(SID, "signed"))
    await settle()
    assert source.reads == 2
    assert not task.done()
    source.default = "signed"
    dispatcher.publish(webhook(SID, "signed"))
    report = await task
    assert report.status is Status.SIGNED
    assert source.reads == 3
    assert clock.time() == FakeClock.DEFAULT_START
    assert dispatcher.subscriber_count == 0


async def test_event_before_the_wait_is_used() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("user_consent_required")
    dispatcher.publish(webhook(SID, "user_consent_required"))
    report = await WebhookWaiter(source, dispatcher).wait_for(
        SID, {"user_consent_required"}, deadline=clock.time() + 60
    )
    assert report.status is Status.USER_CONSENT_REQUIRED
    assert source.reads == 1
    assert dispatcher.pending_count == 0


async def test_duplicate_webhooks_arriving_together_cost_one_read() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(SID, {"signed"}, deadline=clock.time() + 60)
    )
    await settle()
    source.default = "signed"
    for _ in range(5):
        dispatcher.publish(webhook(SID, "signed"))
    assert (await task).status is Status.SIGNED
    assert source.reads == 2


async def test_stale_reads_after_late_webhooks_never_move_the_waiter_backwards() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source()
    # First read: confirmation_required; then a lagging read says user_consent_required.
    source.script = ["confirmation_required", "user_consent_required"]
    source.default = "confirmation_required"
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(
            SID, {"user_consent_required", "signed"}, deadline=clock.time() + 60
        )
    )
    await settle()
    dispatcher.publish(webhook(SID, "user_consent_required"))  # late, out of order
    await settle()
    assert source.reads == 2
    assert not task.done()  # the stale read was not taken as the target
    clock.advance(60)
    with pytest.raises(WaitTimeoutError) as caught:
        await task
    assert caught.value.last is not None
    assert caught.value.last.status is Status.CONFIRMATION_REQUIRED


async def test_webhook_waiter_reads_once_more_at_the_deadline_then_times_out() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(SID, {"signed"}, deadline=clock.time() + 60)
    )
    await settle()
    clock.advance(59)
    await settle()
    assert not task.done()
    clock.advance(1)
    with pytest.raises(WaitTimeoutError) as caught:
        await task
    assert source.reads == 2
    assert caught.value.signature_id == SID


async def test_webhook_waiter_fails_fast_on_kyc_required() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(SID, {"signed"}, deadline=clock.time() + 60)
    )
    await settle()
    source.default = "kyc_required"
    dispatcher.publish(webhook(SID, "kyc_required"))
    with pytest.raises(KYCRequiredError):
        await task
    assert clock.time() == FakeClock.DEFAULT_START


async def test_hybrid_waiter_finds_a_lost_webhook_within_one_safety_interval() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    waiter = HybridWaiter(source, dispatcher, safety_interval=30)
    task = asyncio.create_task(waiter.wait_for(SID, {"signed"}, deadline=clock.time() + 600))
    await settle()
    source.default = "signed"  # ... and its webhook is lost
    clock.advance(29)
    await settle()
    assert not task.done()
    clock.advance(1)
    assert (await task).status is Status.SIGNED
    assert source.reads == 2


async def test_hybrid_safety_interval_restarts_after_each_read() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("pending")
    waiter = HybridWaiter(source, dispatcher, safety_interval=30)
    task = asyncio.create_task(waiter.wait_for(SID, {"signed"}, deadline=clock.time() + 600))
    await settle()
    clock.advance(20)
    dispatcher.publish(webhook(SID, "pending"))
    await settle()
    assert source.reads == 2
    clock.advance(29)  # 49 s: only 29 s since the last read
    await settle()
    assert source.reads == 2
    clock.advance(1)
    await settle()
    assert source.reads == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dispatcher.subscriber_count == 0


async def test_failed_read_is_retried_after_retry_after() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("signed")
    source.script = ["pending", RateLimitedError(429, retry_after=10.0)]
    task = asyncio.create_task(
        WebhookWaiter(source, dispatcher).wait_for(SID, {"signed"}, deadline=clock.time() + 60)
    )
    await settle()
    dispatcher.publish(webhook(SID, "signed"))
    await settle()
    assert source.reads == 2
    dispatcher.publish(webhook(SID, "signed"))  # kept in the mailbox: Retry-After first
    clock.advance(9)
    await settle()
    assert source.reads == 2
    clock.advance(1)
    assert (await task).status is Status.SIGNED
    assert source.reads == 3


async def test_no_deadline_is_refused() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    with pytest.raises(InvalidInputError):
        await HybridWaiter(Source(), dispatcher).wait_for(SID, {"signed"}, deadline=None)  # type: ignore[arg-type]
    assert dispatcher.subscriber_count == 0


def test_safety_interval_must_be_positive() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    with pytest.raises(InvalidInputError) as caught:
        HybridWaiter(Source(), dispatcher, safety_interval=0)
    assert caught.value.field == "safety_interval"


async def test_ten_thousand_waiters_on_one_dispatcher_are_all_released_by_their_events() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    source = Source("confirmation_required")
    waiter = HybridWaiter(source, dispatcher, safety_interval=3600)
    ids = [f"sig-{n}" for n in range(10_000)]
    tasks = [
        asyncio.create_task(waiter.wait_for(i, {"signed"}, deadline=clock.time() + 7200))
        for i in ids
    ]
    await settle()
    assert dispatcher.subscriber_count == 10_000
    assert source.reads == 10_000
    for signature_id in ids:
        source.status[signature_id] = "signed"
        dispatcher.publish(webhook(signature_id, "signed"))
    reports = await asyncio.gather(*tasks)
    assert [r.signature_id for r in reports] == ids
    assert {r.status for r in reports} == {Status.SIGNED}
    assert source.reads == 20_000  # one re-read per event, no polling
    assert clock.time() == FakeClock.DEFAULT_START
    assert dispatcher.subscriber_count == 0
