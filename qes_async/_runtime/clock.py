"""Injected time: one clock object that the client, waiters, flow and sandbox share.

Two kinds of waiting exist, and the fake clock keeps them apart:

* ``await clock.sleep(seconds)`` is an *actor* sleeping: a poller between two polls, a
  simulated human thinking.  On a :class:`FakeClock` with ``auto_advance`` (the default) it
  moves fake time forward to the end of the sleep, so hour-long waits take microseconds.
* ``clock.call_at(when, callback)`` and ``await clock.sleep_until(when, passive=True)`` are
  *timers*: a deadline, a processing delay in the sandbox.  They never move time; they fire
  when time reaches them, however it got there.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What :meth:`Clock.call_at` returns: something that can be cancelled."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time in POSIX seconds (UTC), sleeping, and timers."""

    def time(self) -> float:
        """Seconds since the epoch, UTC."""
        ...

    def now(self) -> datetime:
        """The current instant as an aware UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep as an actor (on a fake clock this may move time forward)."""
        ...

    async def sleep_until(self, when: float, *, passive: bool = False) -> None:
        """Sleep until ``time() >= when``; ``passive`` never moves a fake clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` (synchronously, in the event loop) once ``time() >= when``."""
        ...


def to_datetime(timestamp: float) -> datetime:
    """POSIX seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


class SystemClock:
    """The real clock: ``time.time()`` and the running event loop's timers."""

    def __init__(self) -> None:
        if type(self).time is SystemClock.time:
            # Read at every step of every flow: the C function itself, no frame of ours
            # (a subclass with a time() of its own keeps it).
            self.time = time.time  # type: ignore[method-assign]

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return to_datetime(time.time())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, when: float, *, passive: bool = False) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)

    def __repr__(self) -> str:
        return "SystemClock()"


def _nothing() -> None:
    return None


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "clock", "when")

    def __init__(
        self, when: float, callback: Callable[[], object], clock: FakeClock | None
    ) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.clock = clock

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Drop the callback at once: it closes over a finished flow's futures, and a
        # cancelled timer must not keep them alive until its due time (or for ever).
        self.callback = _nothing
        if self.clock is not None:
            self.clock._timer_cancelled()
            self.clock = None


class FakeClock:
    """A clock that only moves when told to, for tests and simulations.

    Args:
        start: the initial time in POSIX seconds (default 2026-01-01T00:00:00Z).
        auto_advance: when true, ``sleep(s)`` moves time forward to the end of the sleep
            (never backwards), so a flow that waits hours runs in milliseconds. When false,
            only :meth:`advance` moves time and every sleep is passive.

    Timers fire in order of their due time, synchronously inside :meth:`advance`.
    """

    DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __init__(self, start: float | None = None, *, auto_advance: bool = True) -> None:
        self._now = self.DEFAULT_START if start is None else float(start)
        self.auto_advance = auto_advance
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._cancelled = 0  # cancelled timers still in the heap
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        return to_datetime(self._now)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and fire every timer that falls due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards; seconds must be >= 0")
        self.set_time(self._now + seconds)

    def set_time(self, when: float) -> None:
        """Move time forward to ``when`` (never backwards), firing due timers in order."""
        target = max(self._now, when)
        while self._timers and self._timers[0][0] <= target:
            due, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                self._cancelled -= 1
                continue
            timer.clock = None
            self._now = max(self._now, due)
            timer.callback()
        self._now = target

    def call_at(self, when: float, callback: Callable[[], object]) -> _FakeTimer:
        if when <= self._now:
            # Due already: run on the next loop iteration, as the real clock would.
            timer = _FakeTimer(when, callback, None)
            asyncio.get_running_loop().call_soon(self._fire, timer)
        else:
            timer = _FakeTimer(when, callback, self)
            heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def _timer_cancelled(self) -> None:
        # Remove cancelled timers once they are half the heap, as asyncio's loop does, so
        # a long run that cancels most of its timers (every finished wait) stays small.
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._timers):
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled = 0

    @staticmethod
    def _fire(timer: _FakeTimer) -> None:
        if not timer.cancelled:
            timer.callback()

    async def sleep(self, seconds: float) -> None:
        target = self._now + max(0.0, seconds)
        if self.auto_advance:
            # Let everything already runnable run first, then jump to the end of *this*
            # sleep (fixed when it began), so concurrent sleepers never add up.
            await asyncio.sleep(0)
            self.set_time(target)
            await asyncio.sleep(0)
        else:
            await self.sleep_until(target, passive=True)

    async def sleep_until(self, when: float, *, passive: bool = False) -> None:
        if not passive and self.auto_advance:
            await self.sleep(when - self._now)
            return
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_at(when, wake)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def pending_timers(self) -> int:
        """How many timers are still waiting (cancelled ones excluded)."""
        return len(self._timers) - self._cancelled

    def next_timer(self) -> float | None:
        """When the earliest pending timer is due, or None."""
        for when, _, timer in sorted(self._timers):
            if not timer.cancelled:
                return when
        return None

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now().isoformat()}, auto_advance={self.auto_advance})"
