"""Routes webhook events to the waiters of each signature: per-signature mailboxes.

:meth:`WebhookDispatcher.publish` is the one narrow way in: synchronous, never blocking,
called by the webhook receiver and (later) by a relay between processes. Waiters take a
:class:`Subscription` for their signature and sleep on it; an event wakes only the waiters
of its own signature (a dict lookup, no scan over everyone), and a sleeping waiter costs a
future and one timer, not a task.

An event that arrives before anyone waits for its signature is kept, bounded in number and
age, and handed to the first subscriber, so no event is lost to the race between "the
service sent a webhook" and "the flow started waiting".
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Iterator
from types import TracebackType

from .._core.errors import InvalidInputError
from .._core.models import Status, WebhookEvent
from .._runtime.clock import Clock, SystemClock, TimerHandle

__all__ = ["Subscription", "WebhookDispatcher"]

log = logging.getLogger("qes_async.webhooks")

# A mailbox keeps the latest few events: they only ever prompt a status re-read, so older
# ones carry nothing a newer one does not.
MAILBOX_SIZE = 16


class Subscription:
    """One waiter's mailbox for one signature; use it as a context manager.

    Created by :meth:`WebhookDispatcher.subscribe`; leaving the ``with`` block (or
    :meth:`close`) unsubscribes.
    """

    __slots__ = ("_closed", "_dispatcher", "_events", "_future", "_timer", "signature_id")

    def __init__(self, dispatcher: WebhookDispatcher, signature_id: str) -> None:
        self.signature_id = signature_id
        self._dispatcher = dispatcher
        # Made with the first event: an empty deque costs about 600 bytes, and most of the
        # time a waiting flow's mailbox is empty (one per waiting flow, 100,000 of them).
        self._events: deque[WebhookEvent] | None = None
        self._future: asyncio.Future[bool] | None = None
        self._timer: TimerHandle | None = None
        self._closed = False

    def deliver(self, event: WebhookEvent) -> None:
        """Put an event in the mailbox and wake the waiter (synchronous)."""
        if self._events is None:
            self._events = deque(maxlen=MAILBOX_SIZE)
        self._events.append(event)
        self._wake(True)

    def _time_up(self) -> None:
        """The wait's timer: a bound method, lighter than a closure per wait."""
        self._wake(False)

    def _wake(self, by_event: bool) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(by_event)

    @property
    def has_events(self) -> bool:
        """True when events wait in the mailbox."""
        return bool(self._events)

    def drain(self) -> list[WebhookEvent]:
        """Take every event out of the mailbox, oldest first."""
        events, self._events = self._events, None  # an empty mailbox holds no deque
        return list(events) if events else []

    def wait(self, until: float) -> asyncio.Future[bool]:
        """A future (await it) done when an event arrives (True) or the clock reaches
        ``until`` (False).

        The timer is passive: it never moves a fake clock. It is cancelled by the next
        wait or by :meth:`close`, whichever comes first: a timer left over from a wait that
        ended can only find that wait's future done. A future and not a coroutine, with no
        callback of its own: a waiting flow would hold the coroutine's frame (or the room
        for a second callback) for the whole wait.
        """
        self._stop_timer()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._events:
            future.set_result(True)
            return future
        self._future = future
        self._timer = self._dispatcher.clock.call_at(until, self._time_up)
        return future

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """Unsubscribe; further events for the signature no longer reach this mailbox."""
        self._stop_timer()
        self._future = None
        if not self._closed:
            self._closed = True
            self._dispatcher._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Subscription({self.signature_id!r}, events={len(self._events or ())})"


#: The documented statuses by value: how a kept event's status is read back.
_STATUSES: dict[str, Status] = {status.value: status for status in Status}
#: How many undocumented statuses a dispatcher remembers, besides the documented ones.
MAX_UNKNOWN_STATUSES = 64


class _Pending:
    """The events kept for one signature (the latest :data:`MAILBOX_SIZE`), each with the
    dispatcher's time when it was kept.

    An event with no errors and a status in the dispatcher's table (``statuses``: the
    documented ones and the first undocumented ones seen), the usual webhook, is kept as a
    plain tuple of its fields (``kept_at, status value, status_code, received_at``) and
    made again, with the same status object, when it is claimed; any other event is kept
    as it is (``kept_at, event``). A tuple of plain values leaves the garbage collector's
    lists at the first collection it survives, where an event object stays tracked: up to
    ``max_pending * MAILBOX_SIZE`` kept objects that every collection of the older
    generations would walk, and that would make those collections come sooner.
    """

    __slots__ = ("events", "updated")

    def __init__(self) -> None:
        self.events: deque[tuple[float, str, int | None, float] | tuple[float, WebhookEvent]]
        self.events = deque(maxlen=MAILBOX_SIZE)
        self.updated = 0.0

    def add(self, now: float, event: WebhookEvent, statuses: dict[str, Status]) -> None:
        status = event.status
        if not event.errors and type(status) is Status:
            value = status._value_
            known = statuses.get(value)
            if known is None and len(statuses) < len(_STATUSES) + MAX_UNKNOWN_STATUSES:
                known = statuses[value] = status  # an undocumented one, first seen
            if known is status:
                self.events.append((now, value, event.status_code, event.received_at))
                return
        self.events.append((now, event))  # errors, or a status not in the table

    def kept(
        self, signature_id: str, statuses: dict[str, Status]
    ) -> Iterator[tuple[float, WebhookEvent]]:
        """The kept events, oldest first, each with the time it was kept."""
        for entry in self.events:
            if len(entry) == 2:
                yield entry
            else:
                kept_at, value, code, received_at = entry
                yield kept_at, WebhookEvent(signature_id, statuses[value], code, (), received_at)


class WebhookDispatcher:
    """Hands webhook events to the waiters of their signature.

    Args:
        clock: the shared clock (default: the system clock); waiters' timers run on it.
        max_pending: at most this many signatures keep events that nobody waited for yet;
            beyond it the least recently updated are dropped.
        pending_ttl: seconds an unclaimed event is kept.

    Thread safety: call :meth:`publish` from the event loop's thread; from another thread
    use ``loop.call_soon_threadsafe(dispatcher.publish, event)``.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        max_pending: int = 10_000,
        pending_ttl: float = 600.0,
    ) -> None:
        if max_pending < 0:
            raise InvalidInputError("max_pending", "must be >= 0")
        if not pending_ttl >= 0:
            raise InvalidInputError("pending_ttl", "must be >= 0 seconds")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.max_pending = max_pending
        self.pending_ttl = pending_ttl
        # A signature's one mailbox as it is (the usual case: one list fewer per waiting
        # flow), a list once it has several.
        self._subscribers: dict[str, Subscription | list[Subscription]] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        # While the clock never went back as events were kept (_in_order), _pending's order
        # is its entries' times' order and _floor a time none of them is older than: while
        # that is young enough, _expire would drop nothing and is not called. Out of order,
        # _expire runs on every event until _pending is empty again.
        self._in_order = True
        self._newest = -math.inf  # the time of the last entry kept
        self._floor = -math.inf
        self.published = 0
        self.dropped = 0
        # Status by value, for the events kept as plain values (see _Pending).
        self._statuses = dict(_STATUSES)

    def publish(self, event: WebhookEvent) -> None:
        """Deliver an event to its signature's waiters, or keep it until one comes.

        Synchronous and never blocking; it never raises for a well-formed event.
        """
        self.published += 1
        subscribers = self._subscribers.get(event.signature_id)
        if subscribers is None:
            self._keep(event)
        elif isinstance(subscribers, Subscription):
            subscribers.deliver(event)
        else:
            for subscription in subscribers:
                subscription.deliver(event)

    def subscribe(self, signature_id: str) -> Subscription:
        """Open a mailbox for ``signature_id``; events kept for it are moved in at once."""
        subscription = Subscription(self, signature_id)
        current = self._subscribers.get(signature_id)
        if current is None:
            self._subscribers[signature_id] = subscription
        elif isinstance(current, Subscription):
            self._subscribers[signature_id] = [current, subscription]
        else:
            current.append(subscription)
        pending = self._pending.pop(signature_id, None)
        if pending is not None:
            oldest = self.clock.time() - self.pending_ttl
            for kept_at, event in pending.kept(signature_id, self._statuses):
                if kept_at >= oldest:
                    subscription.deliver(event)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        signature_id = subscription.signature_id
        subscribers = self._subscribers.get(signature_id)
        if subscribers is None:
            return
        if subscribers is subscription:
            del self._subscribers[signature_id]
        elif isinstance(subscribers, list) and subscription in subscribers:
            # A signature has one waiter or a handful, so this list removal is short.
            subscribers.remove(subscription)
            if len(subscribers) == 1:
                self._subscribers[signature_id] = subscribers[0]

    def _forget(self, signature_id: str) -> None:
        """Drop the events kept for a signature whose flow has ended (nobody will claim
        them: a resumed flow re-reads the status first anyway). Open mailboxes stay."""
        pending = self._pending.pop(signature_id, None)
        if pending is not None:
            self.dropped += len(pending.events)

    def _keep(self, event: WebhookEvent) -> None:
        now = self.clock.time()
        if not now >= self._newest:  # the clock went back (or is not a number)
            self._in_order = False
        self._newest = now
        signature_id = event.signature_id
        pending = self._pending.get(signature_id)
        if pending is None:
            pending = self._pending[signature_id] = _Pending()
        else:
            self._pending.move_to_end(signature_id)  # the last updated goes last
        pending.add(now, event, self._statuses)
        pending.updated = now
        # In order, no entry is older than _floor: when that is within the age limit, and
        # there are not too many, _expire would stop at its first entry and drop nothing.
        if (
            not self._in_order
            or len(self._pending) > self.max_pending
            or not now - self._floor <= self.pending_ttl
        ):
            self._expire(now)

    def _expire(self, now: float) -> None:
        # Entries are ordered by last update, so expiry and overflow both trim the front.
        while self._pending:
            signature_id, oldest = next(iter(self._pending.items()))
            too_many = len(self._pending) > self.max_pending
            if not too_many and now - oldest.updated <= self.pending_ttl:
                self._floor = oldest.updated  # in order, the oldest of all
                return
            del self._pending[signature_id]
            self.dropped += len(oldest.events)
            log.debug("dropped %d unclaimed webhook event(s)", len(oldest.events))
        self._in_order, self._newest, self._floor = True, -math.inf, -math.inf

    @property
    def pending_count(self) -> int:
        """How many signatures hold events that nobody has claimed yet."""
        return len(self._pending)

    @property
    def subscriber_count(self) -> int:
        """How many mailboxes are open."""
        return sum(1 if isinstance(s, Subscription) else len(s) for s in self._subscribers.values())

    def __repr__(self) -> str:
        return (
            f"WebhookDispatcher(waiting_signatures={len(self._subscribers)}, "
            f"pending={len(self._pending)})"
        )
