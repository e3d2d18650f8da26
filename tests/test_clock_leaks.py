"""FakeClock releases what cancelled timers hold: a long run must not grow with them."""

from __future__ import annotations

import asyncio
import gc
import weakref

from qes_async import FakeClock


class _Owner:
    """Stands for a finished flow's state that a timer callback closes over."""

    def poke(self) -> None:
        pass


async def test_a_cancelled_timer_no_longer_holds_its_callback() -> None:
    clock = FakeClock(auto_advance=False)
    owner = _Owner()
    ref = weakref.ref(owner)
    timer = clock.call_at(clock.time() + 3600, owner.poke)
    timer.cancel()
    del owner
    gc.collect()
    assert ref() is None


async def test_cancelled_timers_are_dropped_from_the_heap() -> None:
    clock = FakeClock(auto_advance=False)
    keep = clock.call_at(clock.time() + 10, lambda: None)
    for i in range(5_000):
        clock.call_at(clock.time() + 3600 + i, lambda: None).cancel()
    assert len(clock._timers) < 200  # bounded, not 5,001
    assert clock.pending_timers == 1
    assert clock.next_timer() == clock.time() + 10
    keep.cancel()
    assert clock.pending_timers == 0


async def test_finished_sleeps_leave_no_timer_behind() -> None:
    clock = FakeClock(auto_advance=False)

    async def sleeper() -> None:
        await clock.sleep_until(clock.time() + 3600, passive=True)

    tasks = [asyncio.create_task(sleeper()) for _ in range(1_000)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert clock.pending_timers == 0
    assert len(clock._timers) < 200


async def test_timers_still_fire_in_order_after_a_compaction() -> None:
    clock = FakeClock(auto_advance=False)
    fired: list[int] = []
    for i in range(300):
        timer = clock.call_at(clock.time() + 100 + i, lambda i=i: fired.append(i))
        if i % 3:
            timer.cancel()
    clock.advance(1_000)
    assert fired == list(range(0, 300, 3))


def test_the_system_clock_reads_time_with_no_frame_of_its_own() -> None:
    import time

    from qes_async import SystemClock

    clock = SystemClock()
    assert clock.time is time.time  # the old code: a method wrapping it, a frame per read
    assert abs(clock.time() - time.time()) < 60

    class Offset(SystemClock):
        def time(self) -> float:
            return 42.0

    assert Offset().time() == 42.0  # a subclass's own time() is kept
    assert repr(clock) == "SystemClock()"
