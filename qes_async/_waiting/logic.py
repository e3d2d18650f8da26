"""The pure decisions every waiter shares: what a status report means for a wait.

No I/O and no asyncio here: a :class:`WaitTracker` is fed status reports and the time, and
says "done" (the report), "keep waiting", or raises the typed error that ends the wait. The
backoff schedule is pure too (:class:`Backoff`), so both are tested with plain table tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterator

from .._core.errors import (
    InvalidInputError,
    KYCRequiredError,
    UnreachableStatusError,
    WaitTimeoutError,
)
from .._core.models import STATUS_RANK, Status, StatusReport

__all__ = ["Backoff", "WaitTracker", "check_deadline", "normalize_targets"]


def normalize_targets(targets: Collection[Status | str]) -> frozenset[Status]:
    """Turn the awaited statuses into a non-empty set of :class:`Status` values.

    Raises:
        InvalidInputError: ``targets`` is empty, a bare string, or holds a non-string.
    """
    if isinstance(targets, str) or not targets:
        raise InvalidInputError(
            "targets", "give a non-empty collection of statuses, e.g. {Status.SIGNED}"
        )
    result = set()
    for target in targets:
        if not isinstance(target, str):
            raise InvalidInputError("targets", f"{target!r} is not a status")
        result.add(target if type(target) is Status else Status(target))
    # Interned: a flow awaits the same few sets over and over, and a parked waiter holds
    # its set, so equal sets are one object (bounded: there are only so many statuses).
    frozen = frozenset(result)
    return _INTERNED.setdefault(frozen, frozen) if len(_INTERNED) < 256 else frozen


_INTERNED: dict[frozenset[Status], frozenset[Status]] = {}


def check_deadline(deadline: object) -> float:
    """Validate an absolute deadline in POSIX seconds; there is no "wait forever".

    Raises:
        InvalidInputError: ``deadline`` is None, not a number, or not finite.
    """
    if deadline is None:
        raise InvalidInputError(
            "deadline", "a wait needs an absolute deadline (POSIX seconds); None is refused"
        )
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise InvalidInputError("deadline", "must be POSIX seconds as a number")
    if not math.isfinite(deadline):
        raise InvalidInputError("deadline", "must be finite; waiting forever is refused")
    return float(deadline)


class WaitTracker:
    """Judges each status report of one wait.

    Args:
        signature_id: the signature waited on.
        targets: the statuses that end the wait successfully.
        deadline: absolute POSIX seconds.
        error_grace: how long (seconds) ``error`` may last before the wait gives up; the
            contract says the service may recover from ``error`` to the previous status.
    """

    # One per waiting flow, held for the whole wait: no __dict__.
    __slots__ = (
        "_best_rank",
        "deadline",
        "error_grace",
        "error_since",
        "last",
        "signature_id",
        "targets",
    )

    def __init__(
        self,
        signature_id: str,
        targets: frozenset[Status],
        deadline: float,
        error_grace: float,
    ) -> None:
        self.signature_id = signature_id
        self.targets = targets
        self.deadline = deadline
        self.error_grace = error_grace
        self.last: StatusReport | None = None
        self.error_since: float | None = None
        self._best_rank = -1

    @property
    def target_names(self) -> tuple[str, ...]:
        """The targets as sorted strings, for error messages."""
        return tuple(sorted(t.value for t in self.targets))

    @property
    def error_deadline(self) -> float | None:
        """When a current ``error`` run becomes fatal, or None outside ``error``."""
        if self.error_since is None:
            return None
        return self.error_since + self.error_grace

    def observe(self, report: StatusReport, now: float) -> StatusReport | None:
        """Judge one report: the report when it is a target, None to keep waiting.

        Raises:
            KYCRequiredError: ``kyc_required`` (when not a target).
            UnreachableStatusError: a terminal status that is not a target, a status past
                every target, or ``error`` lasting longer than ``error_grace``.
        """
        status = report.status
        rank = STATUS_RANK.get(status)
        if rank is not None and rank < self._best_rank:
            return None  # a stale read (a late replica): never move backwards
        self.last = report
        if status in self.targets:
            return report
        if rank is not None:
            self._best_rank = rank
        if status is Status.KYC_REQUIRED:
            raise KYCRequiredError(report, self.target_names)
        if status.is_terminal or self._passed_every_target():
            raise UnreachableStatusError(report, self.target_names)
        if status is not Status.ERROR:
            self.error_since = None
            return None
        if self.error_since is None:
            self.error_since = now
        if now - self.error_since >= self.error_grace:
            raise UnreachableStatusError(report, self.target_names)
        return None

    def _passed_every_target(self) -> bool:
        # Statuses only move forward, so targets that all rank below the furthest status
        # seen can no longer come (unknown statuses have no rank and never count as passed).
        ranks = [STATUS_RANK.get(target) for target in self.targets]
        return all(r is not None and r < self._best_rank for r in ranks)

    def next_check(self, planned: float) -> float:
        """The planned next read, brought forward to the deadline or the end of error grace."""
        when = min(planned, self.deadline)
        error_deadline = self.error_deadline
        return when if error_deadline is None else min(when, error_deadline)

    def timeout(self) -> WaitTimeoutError:
        """The error for a wait that reached its deadline."""
        return WaitTimeoutError(self.signature_id, self.target_names, self.last)


class Backoff:
    """Jittered exponential delays from a fast start to a slow cap.

    The n-th delay (from 0) is ``min(cap, initial * factor**n)`` shortened by a random
    fraction of at most ``jitter``, so a delay never exceeds the cap and many waiters started
    together spread out instead of polling in lockstep.

    Args:
        initial: the first delay, seconds (> 0).
        cap: the largest delay, seconds (>= initial).
        factor: growth per step (>= 1).
        jitter: the largest fraction taken off a delay, 0 to 1.
        rng: the random source (seed it for reproducible schedules).
    """

    def __init__(
        self,
        initial: float,
        cap: float,
        factor: float,
        jitter: float,
        rng: random.Random,
    ) -> None:
        if not (math.isfinite(initial) and initial > 0):
            raise InvalidInputError("initial_interval", "must be a positive number of seconds")
        if not (math.isfinite(cap) and cap >= initial):
            raise InvalidInputError("max_interval", "must be finite and >= initial_interval")
        if not (math.isfinite(factor) and factor >= 1):
            raise InvalidInputError("factor", "must be >= 1")
        if not 0 <= jitter <= 1:
            raise InvalidInputError("jitter", "must be between 0 and 1")
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rng = rng
        self._steps = self._schedule()

    def _schedule(self) -> Iterator[float]:
        # The growth is backoff's (the one schedule the SDK uses, as RetryPolicy.waits
        # does); the jitter is ours, since it takes a seeded random source. Imported
        # here, as in RetryPolicy: importing a waiter does not load backoff.
        import backoff

        gen = backoff.expo(base=self.factor, factor=self.initial, max_value=self.cap)
        gen.send(None)  # prime: backoff's generators yield once before the first value
        return gen

    def next_delay(self) -> float:
        """The next delay in seconds; the one after it grows by ``factor`` up to the cap."""
        base = min(self.cap, next(self._steps))
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from the fast initial delay (things are moving)."""
        self._steps = self._schedule()
