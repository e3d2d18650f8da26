"""Waiting by polling ``get_signature_status`` on a jittered exponential schedule."""

from __future__ import annotations

import logging
import random
from collections.abc import Collection
from typing import Protocol

from .._core.errors import (
    InvalidInputError,
    OutcomeUnknownError,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    WaitTimeoutError,
)
from .._core.models import Status, StatusReport
from .._runtime.clock import Clock, SystemClock
from .logic import Backoff, WaitTracker, check_deadline, normalize_targets

__all__ = ["TRANSIENT_ERRORS", "PollingWaiter", "StatusSource", "read_status_until"]

log = logging.getLogger("qes_async.waiters")

# A failed status read that is worth trying again on the schedule: a GET changes nothing, so
# even an outcome-unknown read is safe to repeat.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RateLimitedError,
    RequestNotSentError,
    OutcomeUnknownError,
    ServerError,
)


class StatusSource(Protocol):
    """Anything that reads a signature's status; :class:`~qes_async.QESClient` is one."""

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        """The signature's current status report."""
        ...


async def read_status(client: StatusSource, signature_id: str) -> tuple[StatusReport | None, float]:
    """One status read: ``(report, 0)``, or ``(None, retry_after)`` after a transient error.

    Errors that are not transient (unknown signature, refused credentials...) propagate.
    """
    try:
        return await client.get_signature_status(signature_id), 0.0
    except TRANSIENT_ERRORS as exc:
        retry_after = getattr(exc, "retry_after", None) or 0.0
        log.info(
            "status read for %s failed (%s); trying again later",
            signature_id,
            type(exc).__name__,
        )
        return None, float(retry_after)


# The jitter of read_status_until's backoff: only spreads retries apart, nothing to replay.
_RETRY_RNG = random.Random()


async def read_status_until(
    client: StatusSource,
    signature_id: str,
    targets: Collection[Status | str],
    *,
    clock: Clock,
    deadline: float,
) -> StatusReport:
    """One status read that survives transient failures: a failed read (timed out, no
    answer, not sent, 5xx, rate limited) is tried again after a jittered backoff (1 s
    doubling to 60 s, or the ``Retry-After``) on ``clock``, the last try at ``deadline``.

    A GET changes nothing, so repeating one whose outcome is unknown is safe; the client
    does not always retry it itself (an attempt that ran out its whole time bound leaves
    its retry policy no time for another).

    Whatever the status, the first report read is returned: ``targets`` (the statuses
    the caller hopes for) only name what was awaited in the timeout's message.

    Raises:
        WaitTimeoutError: every read failed until ``deadline`` (``last`` is None).
        QESError: a read failed for a reason that is not transient (as :func:`read_status`).
    """
    backoff: Backoff | None = None
    while True:
        report, hold = await read_status(client, signature_id)
        if report is not None:
            return report
        now = clock.time()
        backoff = backoff or Backoff(1.0, 60.0, 2.0, 0.2, _RETRY_RNG)
        when = max(min(now + backoff.next_delay(), deadline), now + hold)
        if now >= deadline or when > deadline:
            raise WaitTimeoutError(signature_id, sorted(Status(t).value for t in targets))
        await clock.sleep(when - now)


class PollingWaiter:
    """Waits by polling ``get_signature_status``: fast at first, then slower up to a cap.

    The first read happens at once; each further delay grows by ``factor`` from
    ``initial_interval`` to ``max_interval``, shortened by up to ``jitter`` (a fraction), and
    the schedule starts fast again whenever the status changes. No sleep runs past the
    deadline: the last read happens at the deadline itself. A ``Retry-After`` from a rate
    limited read is honoured (if it ends past the deadline the wait gives up at once);
    transient failures (not sent, outcome unknown, 5xx) are retried on the schedule.

    Args:
        client: what reads statuses (a :class:`~qes_async.QESClient`).
        clock: the shared clock; polls sleep on it as an actor (a fake clock jumps).
        initial_interval: the first wait between reads, in seconds.
        max_interval: the longest wait between reads, in seconds.
        factor: how much each wait grows over the one before.
        jitter: the most a wait is shortened at random, as a fraction of it.
        max_requests_per_wait: the most status reads one wait may spend; the last one is
            kept for the deadline. None for no limit.
        error_grace: how long ``error`` may last before the wait gives up.
        rng: the jitter's random source (give one for reproducible schedules).
        seed: seeds a new random source instead (for reproducible schedules).
    """

    def __init__(
        self,
        client: StatusSource,
        *,
        clock: Clock | None = None,
        initial_interval: float = 1.0,
        max_interval: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        max_requests_per_wait: int | None = 500,
        error_grace: float = 300.0,
        rng: random.Random | None = None,
        seed: int | None = None,
    ) -> None:
        if max_requests_per_wait is not None and max_requests_per_wait < 1:
            raise InvalidInputError("max_requests_per_wait", "must be >= 1 or None")
        if not error_grace >= 0:
            raise InvalidInputError("error_grace", "must be >= 0 seconds")
        self._client = client
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.initial_interval = initial_interval
        self.max_interval = max_interval
        self.factor = factor
        self.jitter = jitter
        self.max_requests_per_wait = max_requests_per_wait
        self.error_grace = error_grace
        self._rng = rng if rng is not None else random.Random(seed)
        self._backoff()  # validate the schedule now, not at the first wait

    def _backoff(self) -> Backoff:
        return Backoff(
            self.initial_interval, self.max_interval, self.factor, self.jitter, self._rng
        )

    async def wait_for(
        self,
        signature_id: str,
        targets: Collection[Status | str],
        *,
        deadline: float,
    ) -> StatusReport:
        """Poll until the status is one of ``targets``; see :class:`StatusWaiter`."""
        tracker = WaitTracker(
            signature_id, normalize_targets(targets), check_deadline(deadline), self.error_grace
        )
        backoff = self._backoff()
        budget = self.max_requests_per_wait
        used = 0
        while True:
            previous = tracker.last
            report, hold = await read_status(self._client, signature_id)
            used += 1
            now = self.clock.time()
            if report is not None:
                if tracker.observe(report, now) is not None:
                    return report
                if (
                    previous is not None
                    and tracker.last is not None
                    and (tracker.last.status != previous.status)
                ):
                    backoff.reset()
            if now >= tracker.deadline or (budget is not None and used >= budget):
                raise tracker.timeout()
            when = self._next_read(
                tracker, backoff, now, hold, budget is not None and budget - used == 1
            )
            await self.clock.sleep(when - now)

    def _next_read(
        self, tracker: WaitTracker, backoff: Backoff, now: float, hold: float, last: bool
    ) -> float:
        """When to read next; raises the timeout when Retry-After outlasts the deadline."""
        when = tracker.next_check(now + backoff.next_delay())
        if last:
            when = tracker.deadline  # keep the final read for the deadline itself
        when = max(when, now + hold)
        if when > tracker.deadline:
            raise tracker.timeout()
        return when

    def __repr__(self) -> str:
        return (
            f"PollingWaiter(initial_interval={self.initial_interval}, "
            f"max_interval={self.max_interval}, factor={self.factor}, jitter={self.jitter}, "
            f"max_requests_per_wait={self.max_requests_per_wait})"
        )
