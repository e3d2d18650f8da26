"""One LISTEN connection per worker that comes back after it is lost.

PostgreSQL delivers a NOTIFY only to sessions listening at that moment, so whatever was
notified while the connection was down is gone.  Every (re)connection therefore runs the
registered catch-up hooks *after* LISTEN is in place: they re-read the tables, and nothing
falls between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import backoff

from .._runtime.clock import Clock, SystemClock

__all__ = ["Listener", "wait_event"]

log = logging.getLogger("qes_async.postgres")

Handler = Callable[[str], None]
Hook = Callable[[], Awaitable[object]]


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (None entries are skipped) and wait until each has ended.

    Their own errors and cancellations are not raised here (a stopping component has
    nowhere better to put them), but a cancellation of the caller still propagates.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live)
    for task in live:
        if not task.cancelled():
            task.exception()  # retrieved: not reported again as "never retrieved"


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` passes (False).

    Unlike ``asyncio.wait_for`` on Python < 3.12, a cancellation arriving as the event is
    set is never swallowed.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, timeout))
    finally:
        waiter.cancel()
    return bool(done)


class Listener:
    """A reconnecting LISTEN connection dispatching payloads to per-channel handlers.

    Args:
        dsn: the libpq connection string (never logged).
        reconnect_delay: the first wait before reconnecting; doubles up to ``max_delay``.
        check_interval: how often a quiet connection is checked for being closed.
    """

    def __init__(
        self,
        dsn: str,
        *,
        reconnect_delay: float = 0.2,
        max_delay: float = 10.0,
        check_interval: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self._dsn = dsn
        self._clock: Clock = clock or SystemClock()
        self._handlers: dict[str, Handler] = {}
        self._hooks: list[Hook] = []
        self._delays = (reconnect_delay, max_delay)
        self._check_interval = check_interval
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self.connected = asyncio.Event()
        self.connections = 0

    def add(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for every NOTIFY on ``channel`` (add before start)."""
        self._handlers[channel] = handler

    def on_connect(self, hook: Hook) -> None:
        """Run ``hook()`` after every (re)connection, once LISTEN is in place."""
        self._hooks.append(hook)

    async def start(self, timeout: float = 30.0) -> None:
        """Connect and listen; returns once the first connection is up."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="qes-postgres-listener")
        if not await wait_event(self.connected, timeout):
            await self.close()  # do not keep reconnecting for a caller that gave up
            raise TimeoutError("could not connect to PostgreSQL to listen")

    async def close(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def wait_reconnected(self, previous: int, timeout: float) -> None:
        """Wait until more than ``previous`` connections have been made and one is up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not (self.connections > previous and self.connected.is_set()):
            if loop.time() > end:
                raise TimeoutError("the listener did not reconnect in time")
            await asyncio.sleep(0.02)

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the listening connection (None while down)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    def _reconnect_delays(self) -> Iterator[float]:
        """Doubling from the first reconnect delay to the cap (the SDK's one schedule)."""
        first, cap = self._delays
        delays = backoff.expo(base=2, factor=first, max_value=cap)
        delays.send(None)  # prime: backoff's generators yield once before the first value
        return delays

    async def _run(self) -> None:
        delays = self._reconnect_delays()
        while True:
            try:
                await self._session()
                delays = self._reconnect_delays()  # it was up: start fast again
            except Exception as exc:  # connection refused, dropped, server restarting
                log.warning("listen connection failed (%s); reconnecting", type(exc).__name__)
            await self._clock.sleep_until(self._clock.time() + next(delays), passive=True)

    async def _session(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            for channel, handler in self._handlers.items():
                await conn.add_listener(channel, _callback(handler))
            self._conn = conn
            self.connections += 1
            for hook in self._hooks:
                await hook()
            self.connected.set()
            while not conn.is_closed():
                await wait_event(lost, self._check_interval)
            log.warning("listen connection lost; reconnecting")
        finally:
            self.connected.clear()
            self._conn = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    def __repr__(self) -> str:
        return f"Listener(channels={sorted(self._handlers)}, up={self.connected.is_set()})"


def _callback(handler: Handler) -> Callable[[Any, int, str, str], None]:
    def callback(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            handler(payload)
        except Exception:  # one bad payload must not stop the listener
            log.exception("NOTIFY handler failed")

    return callback
