"""Status waiters: wait until a signature reaches one of a set of statuses.

Three implementations of one small protocol, :class:`StatusWaiter`:

* :class:`PollingWaiter` polls on a jittered exponential schedule (no webhooks needed);
* :class:`WebhookWaiter` sleeps until a webhook for the signature arrives, then re-reads the
  status, as the service asks (a webhook alone is never trusted);
* :class:`HybridWaiter`, the recommended default with webhooks: webhook-fed, plus a slow
  safety poll so a lost webhook costs at most one ``safety_interval``.

Every waiter returns the first report whose status is a target, fails fast with a typed error
when the target can no longer come, and raises :class:`~qes_async.WaitTimeoutError` at the
deadline. No deadline is an error, never infinity.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Collection
from typing import Protocol, runtime_checkable

from .._core.errors import InvalidInputError
from .._core.models import Status, StatusReport
from .._runtime.clock import Clock
from .dispatcher import Subscription, WebhookDispatcher
from .logic import Backoff, WaitTracker, check_deadline, normalize_targets
from .polling import PollingWaiter, StatusSource, read_status

__all__ = ["HybridWaiter", "PollingWaiter", "StatusSource", "StatusWaiter", "WebhookWaiter"]

log = logging.getLogger("qes_async.waiters")


@runtime_checkable
class StatusWaiter(Protocol):
    """Waits until a signature reaches one of ``targets``.

    ``deadline`` is absolute POSIX seconds on the shared clock. It returns the first status
    report whose status is in ``targets``.

    Raises:
        InvalidInputError: no deadline (None), a non-finite one, or no targets.
        KYCRequiredError: the status became ``kyc_required`` (and it is not a target).
        UnreachableStatusError: ``invalid_signature`` or ``signed`` (not targets), a status
            past every target, or ``error`` lasting longer than the waiter's error grace.
        WaitTimeoutError: the deadline passed first; it carries the last report seen.
    """

    async def wait_for(
        self,
        signature_id: str,
        targets: Collection[Status | str],
        *,
        deadline: float,
    ) -> StatusReport: ...


class WebhookWaiter:
    """Waits for webhooks and re-reads the status on each one before acting.

    The status is read once at the start (so an event that came before the wait, or a status
    reached before it, counts), then again after every batch of webhooks for the signature:
    duplicates arriving together cost one read, and since only re-read reports are judged, a
    late or out-of-order webhook never moves the waiter backwards. A read that fails
    transiently is retried after a short backoff. With only webhooks, a lost webhook is
    noticed at the deadline's final read; prefer :class:`HybridWaiter`.

    Timers here are passive: on a fake clock, something else (the flow, the test) moves time.

    Args:
        client: what reads statuses (a :class:`~qes_async.QESClient`).
        dispatcher: where the webhook receiver publishes events.
        clock: the shared clock (default: the dispatcher's).
        error_grace: how long ``error`` may last before the wait gives up.
        retry_interval: the first delay before re-trying a failed read (grows to 60 s).
    """

    safety_interval: float | None = None

    def __init__(
        self,
        client: StatusSource,
        dispatcher: WebhookDispatcher,
        *,
        clock: Clock | None = None,
        error_grace: float = 300.0,
        retry_interval: float = 1.0,
    ) -> None:
        if not error_grace >= 0:
            raise InvalidInputError("error_grace", "must be >= 0 seconds")
        self._client = client
        self.dispatcher = dispatcher
        self.clock: Clock = clock if clock is not None else dispatcher.clock
        self.error_grace = error_grace
        self.retry_interval = retry_interval
        self._rng = random.Random()

    async def wait_for(
        self,
        signature_id: str,
        targets: Collection[Status | str],
        *,
        deadline: float,
    ) -> StatusReport:
        """Wait until the status is one of ``targets``; see :class:`StatusWaiter`."""
        tracker = WaitTracker(
            signature_id, normalize_targets(targets), check_deadline(deadline), self.error_grace
        )
        # One frame for the whole wait (a parked flow holds every frame of its stack), and
        # the retry schedule only once a read failed.
        retry: Backoff | None = None
        # try/finally, not with: a with block suspended here would hold its __exit__.
        subscription = self.dispatcher.subscribe(signature_id)
        try:
            while True:
                subscription.drain()  # this read answers every event received so far
                report, hold = await read_status(self._client, signature_id)
                now = self.clock.time()
                if report is None:
                    retry = retry or Backoff(self.retry_interval, 60.0, 2.0, 0.2, self._rng)
                    retry_at: float | None = now + max(hold, retry.next_delay())
                else:
                    retry = retry_at = None  # things are moving: start again from the first
                    if tracker.observe(report, now) is not None:
                        return report
                if now >= tracker.deadline:
                    raise tracker.timeout()
                await self._sleep(tracker, subscription, now, retry_at)
        finally:
            subscription.close()

    def _sleep(
        self,
        tracker: WaitTracker,
        subscription: Subscription,
        now: float,
        retry_at: float | None,
    ) -> Awaitable[object]:
        """What to sleep on: a webhook, the safety poll, the end of error grace or the
        deadline (returned, not awaited here, so the wait adds no frame of its own).

        After a failed read, sleep until the retry instead: events keep in the mailbox, and
        a read before a ``Retry-After`` ends would only be refused again.
        """
        if retry_at is not None:
            if retry_at > tracker.deadline:
                raise tracker.timeout()
            return self.clock.sleep_until(retry_at, passive=True)
        wake = tracker.next_check(tracker.deadline)
        if self.safety_interval is not None:
            wake = min(wake, now + self.safety_interval)
        return subscription.wait(wake)

    def _forget(self, signature_id: str) -> None:
        """A flow on this signature ended: drop the webhook events kept for it."""
        self.dispatcher._forget(signature_id)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dispatcher={self.dispatcher!r}, "
            f"safety_interval={self.safety_interval})"
        )


class HybridWaiter(WebhookWaiter):
    """The recommended waiter with webhooks: webhook-fed, plus a slow safety poll.

    Behaves as :class:`WebhookWaiter`, and also re-reads the status when
    ``safety_interval`` seconds pass without a read, so a lost webhook costs at most one
    interval. Its timers are passive (they never move a fake clock).

    Args:
        client: as :class:`WebhookWaiter`.
        dispatcher: as :class:`WebhookWaiter`.
        clock: as :class:`WebhookWaiter`.
        error_grace: as :class:`WebhookWaiter`.
        retry_interval: as :class:`WebhookWaiter`.
        safety_interval: seconds between safety reads when no webhook comes (> 0).
    """

    def __init__(
        self,
        client: StatusSource,
        dispatcher: WebhookDispatcher,
        *,
        clock: Clock | None = None,
        safety_interval: float = 60.0,
        error_grace: float = 300.0,
        retry_interval: float = 1.0,
    ) -> None:
        if not safety_interval > 0:
            raise InvalidInputError("safety_interval", "must be > 0 seconds")
        super().__init__(
            client,
            dispatcher,
            clock=clock,
            error_grace=error_grace,
            retry_interval=retry_interval,
        )
        self.safety_interval = safety_interval
