"""Flow events for progress bars and logs: one class, delivered to callbacks and iterators.

Events never carry a passcode or a mobile number.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence

import attrs

__all__ = ["EventHub", "FlowEvent", "FlowEventKind"]

log = logging.getLogger("qes_async.flow")


class FlowEventKind(str, enum.Enum):
    """What a :class:`FlowEvent` reports."""

    STATUS_CHANGED = "status_changed"
    WAITING_FOR_SIGNER = "waiting_for_signer"  # `waiting_for`: consent, passcode or selfie
    DEADLINE_APPROACHING = "deadline_approaching"  # `deadline`, `waiting_for`
    RESTARTED = "restarted"  # `reason`; `generation` is the new one
    DOCUMENT_DOWNLOADED = "document_downloaded"  # `document_id`, `path`, `sha256`, `validation`
    # A create_workflow whose answer never came: a workflow may exist at the service that
    # the flow cannot know or use (an orphan); `reason` says how the answer was lost.
    CREATE_UNCONFIRMED = "create_unconfirmed"
    FINISHED = "finished"  # `outcome`; the last event of a run


@attrs.frozen
class FlowEvent:
    """Something that happened in a flow.  Fields that do not apply are None."""

    kind: FlowEventKind
    flow_id: str
    generation: int
    time: float
    signature_id: str | None = None
    status: str | None = None
    waiting_for: str | None = None
    deadline: float | None = None
    reason: str | None = None
    document_id: str | None = None
    path: str | None = None
    sha256: str | None = None
    validation: str | None = None
    outcome: str | None = None


EventCallback = Callable[[FlowEvent], object]


class EventHub:
    """Fans events out to callbacks (sync or async) and to async iterators."""

    __slots__ = ("_callbacks", "_queues", "_tasks")

    def __init__(self, callbacks: Sequence[EventCallback] = ()) -> None:
        # A tuple: one empty one shared by the flows with no callback (most of them).
        self._callbacks = tuple(callbacks)
        # Made at the first iterator and the first async callback: most flows have neither.
        self._queues: list[asyncio.Queue[FlowEvent | None]] | None = None
        self._tasks: set[asyncio.Future[object]] | None = None

    def listening(self) -> bool:
        """Whether an emitted event would reach anyone (a callback, an iterator or the
        debug log): a flow builds no event when none would."""
        return bool(self._callbacks or self._queues) or log.isEnabledFor(logging.DEBUG)

    def emit(self, event: FlowEvent) -> None:
        """Deliver ``event`` now; a failing callback is logged, never fatal."""
        log.debug("flow %s: %s", event.flow_id, event.kind.value)
        for queue in self._queues or ():
            queue.put_nowait(event)
        for callback in self._callbacks:
            try:
                result = callback(event)
            except Exception:
                log.exception("a flow event callback failed")
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                if self._tasks is None:
                    self._tasks = set()
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[object]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a flow event callback failed: %s", type(task.exception()).__name__)

    def close(self) -> None:
        """End every iterator (after the events already queued)."""
        for queue in self._queues or ():
            queue.put_nowait(None)

    def iterate(self) -> AsyncIterator[FlowEvent]:
        """Events from now until the run ends: the queue is registered at this call, not
        at the first ``__anext__`` (an iterator made before ``run()`` misses nothing)."""
        queue: asyncio.Queue[FlowEvent | None] = asyncio.Queue()
        if self._queues is None:
            self._queues = []
        self._queues.append(queue)
        return self._drain(queue)

    async def _drain(self, queue: asyncio.Queue[FlowEvent | None]) -> AsyncIterator[FlowEvent]:
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if self._queues is not None:
                self._queues.remove(queue)
