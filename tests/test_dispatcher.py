"""WebhookDispatcher: per-signature mailboxes, and bounded, expiring pending events."""

from __future__ import annotations

import asyncio
import gc

from qes_async import ErrorDetail, FakeClock, Status, WebhookDispatcher, WebhookEvent


def event(signature_id: str, status: str = "pending") -> WebhookEvent:
    return WebhookEvent(signature_id=signature_id, status=Status(status))


async def test_event_reaches_every_subscriber_of_its_signature_only() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    with (
        dispatcher.subscribe("a") as first,
        dispatcher.subscribe("a") as second,
        dispatcher.subscribe("b") as other,
    ):
        dispatcher.publish(event("a", "signed"))
        assert [e.status for e in first.drain()] == [Status.SIGNED]
        assert [e.status for e in second.drain()] == [Status.SIGNED]
        assert other.drain() == []
    assert dispatcher.subscriber_count == 0
    assert dispatcher.pending_count == 0


async def test_event_before_anyone_waits_is_kept_and_handed_to_the_first_subscriber() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    dispatcher.publish(event("a", "pending"))
    dispatcher.publish(event("a", "user_consent_required"))
    assert dispatcher.pending_count == 1
    with dispatcher.subscribe("a") as subscription:
        assert [e.status.value for e in subscription.drain()] == [
            "pending",
            "user_consent_required",
        ]
    assert dispatcher.pending_count == 0


async def test_pending_events_are_bounded_dropping_the_least_recent_signature() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock(), max_pending=2)
    dispatcher.publish(event("a"))
    dispatcher.publish(event("b"))
    dispatcher.publish(event("a"))  # a is now the most recent
    dispatcher.publish(event("c"))
    assert dispatcher.pending_count == 2
    assert dispatcher.dropped == 1
    with dispatcher.subscribe("b") as subscription:
        assert subscription.drain() == []
    with dispatcher.subscribe("a") as subscription:
        assert len(subscription.drain()) == 2


async def test_pending_events_expire() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock, pending_ttl=60)
    dispatcher.publish(event("a"))
    clock.advance(61)
    with dispatcher.subscribe("a") as subscription:
        assert subscription.drain() == []
    dispatcher.publish(event("b"))
    clock.advance(61)
    dispatcher.publish(event("c"))  # publishing trims expired entries
    assert dispatcher.pending_count == 1
    assert dispatcher.dropped == 1


async def test_wait_wakes_on_an_event() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    with dispatcher.subscribe("a") as subscription:
        task = asyncio.ensure_future(subscription.wait(clock.time() + 100))
        await asyncio.sleep(0)
        assert not task.done()
        dispatcher.publish(event("a"))
        assert await task is True
        assert clock.time() == FakeClock.DEFAULT_START


async def test_wait_times_out_on_a_passive_timer_that_never_moves_time() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    with dispatcher.subscribe("a") as subscription:
        task = asyncio.ensure_future(subscription.wait(clock.time() + 100))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        assert clock.time() == FakeClock.DEFAULT_START
        clock.advance(100)
        assert await task is False


async def test_a_wait_is_a_future_whose_timer_ends_with_the_next_wait_or_close() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    with dispatcher.subscribe("a") as subscription:
        waiting = subscription.wait(clock.time() + 100)
        # A future, not a coroutine: a parked waiter holds no frame for its sleep.
        assert isinstance(waiting, asyncio.Future)
        dispatcher.publish(event("a"))
        assert await waiting is True
        subscription.drain()
        later = subscription.wait(clock.time() + 1_000)
        assert [t.cancelled for _, _, t in clock._timers] == [True, False]  # the first's
        clock.advance(100)  # the first timer never fires into the later wait
        assert not later.done()
        later.cancel()  # as when the waiting task is cancelled
    assert all(timer.cancelled for _, _, timer in clock._timers)  # closing ended it


async def test_events_after_unsubscribing_are_kept_as_pending() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    subscription = dispatcher.subscribe("a")
    subscription.close()
    subscription.close()  # idempotent
    dispatcher.publish(event("a"))
    assert dispatcher.pending_count == 1
    assert subscription.drain() == []


def test_repr_is_short() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    assert repr(dispatcher) == "WebhookDispatcher(waiting_signatures=0, pending=0)"


def test_one_or_several_mailboxes_of_a_signature_all_get_its_events() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    first = dispatcher.subscribe("a")
    # One mailbox is kept as it is (no list per waiting flow), several in a list.
    assert dispatcher._subscribers["a"] is first
    second, third = dispatcher.subscribe("a"), dispatcher.subscribe("a")
    assert dispatcher.subscriber_count == 3
    dispatcher.publish(event("a"))
    assert [s.has_events for s in (first, second, third)] == [True, True, True]
    second.close()
    third.close()
    assert dispatcher._subscribers["a"] is first
    first.drain()
    second.drain()
    dispatcher.publish(event("a"))
    assert first.has_events
    assert not second.has_events
    first.close()
    first.close()  # closing twice is harmless
    assert dispatcher.subscriber_count == 0
    dispatcher.publish(event("a"))  # nobody waits: kept for the first who comes
    assert dispatcher.pending_count == 1


def test_usual_kept_events_leave_the_garbage_collectors_lists() -> None:
    """A kept event with a documented status and no errors is held as plain values: after a
    collection nothing of it is tracked, so thousands of kept events are not walked by
    every collection of the older generations (nor make those come sooner)."""
    dispatcher = WebhookDispatcher(clock=FakeClock())
    statuses = (Status.SIGNED, Status("documents_approved"), Status.PENDING)
    for n in range(200):
        status = statuses[n % 3]
        dispatcher.publish(WebhookEvent(f"s{n % 20}", status, 3200 + n, received_at=1000.0 + n))
    gc.collect()
    entries = [entry for pending in dispatcher._pending.values() for entry in pending.events]
    assert len(entries) == 20 * 10
    assert not any(gc.is_tracked(entry) for entry in entries)


def test_kept_events_are_handed_over_field_for_field() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    unknown = Status("brand_new_status")
    details = (ErrorDetail(code="E1", message="bad", field="name", status_code=4000),)
    published = [
        WebhookEvent("a", Status.PENDING, None, (), 1.5),
        WebhookEvent("a", Status.SIGNED, 3200, (), 2.5),
        WebhookEvent("a", unknown, 3100, (), 3.5),
        WebhookEvent("a", Status.ERROR, 4000, details, 4.5),
        WebhookEvent("a", Status.SIGNED, True, (), 5),
    ]
    for item in published:
        dispatcher.publish(item)
    with dispatcher.subscribe("a") as subscription:
        handed = subscription.drain()
    fields = [(e.signature_id, e.status, e.status_code, e.errors, e.received_at) for e in handed]
    assert fields == [
        (e.signature_id, e.status, e.status_code, e.errors, e.received_at) for e in published
    ]
    assert all(h.status is p.status for h, p in zip(handed, published, strict=True))
    assert type(handed[4].status_code) is bool
    assert type(handed[4].received_at) is int


def test_past_its_table_of_statuses_an_event_is_kept_as_it_is() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    many = [Status(f"new_status_{n}") for n in range(100)]
    again = Status("new_status_0")  # equal to a remembered one, but another object
    for status in [*many, again]:
        dispatcher.publish(WebhookEvent("a", status, None, (), 1.0))
    with dispatcher.subscribe("a") as subscription:
        handed = subscription.drain()
    assert [e.status for e in handed] == [*many[-15:], again]
    assert all(h.status is s for h, s in zip(handed, [*many[-15:], again], strict=True))
