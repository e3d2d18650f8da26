"""The webhook relay: any worker records an event, every worker's dispatcher gets it.

The webhook receiver on whichever worker the load balancer picked writes the event to the
events table and NOTIFYs (one statement, so the notification is sent when the row commits);
it answers Fourthline only once the row is written (503 otherwise, so Fourthline retries).
Every worker LISTENs and feeds new rows to its local
:meth:`~qes_async.WebhookDispatcher.publish`, where the waiters of that signature (if this
worker drives it) wake and re-read the status.  After a reconnection the worker re-reads the
rows it missed; a slow poll is the safety net; and the flows' own status polling
(:class:`~qes_async.HybridWaiter`) stays the last one.
"""

# Table names are interpolated only from Tables, whose prefix is checked against
# [a-z_][a-z0-9_]*; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .._client.validation import is_valid_id
from .._core.errors import InvalidInputError
from .._core.models import ErrorDetail, Status, WebhookEvent
from .._waiting.dispatcher import WebhookDispatcher
from ..webhooks import BearerAuth, WebhookReceiver
from ._listener import Listener, cancel_and_wait, wait_event
from ._schema import DEFAULT_PREFIX, Tables

__all__ = ["PostgresRelay", "RecordingDispatcher"]

log = logging.getLogger("qes_async.postgres")


# What PostgreSQL refuses in text and jsonb: NUL, and (escaped in JSON) lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(text: str | None) -> str | None:
    return None if text is None else _UNSTORABLE.sub("\ufffd", text)


def encode_event(event: WebhookEvent) -> str:
    """The event as the JSON stored in the events table; a NUL or a lone surrogate (which
    PostgreSQL refuses, making the webhook fail with 503 for ever) becomes U+FFFD."""
    return json.dumps(
        {
            "status": _storable(event.status.value),
            "statusCode": event.status_code,
            "errors": [
                {
                    "code": _storable(e.code),
                    "message": _storable(e.message),
                    "field": _storable(e.field),
                    "statusCode": e.status_code,
                }
                for e in event.errors
            ],
            "receivedAt": event.received_at,
        }
    )


def decode_event(signature_id: str, text: str) -> WebhookEvent:
    """An event back from its stored JSON."""
    data = json.loads(text)
    return WebhookEvent(
        signature_id=signature_id,
        status=Status(data["status"]),
        status_code=data.get("statusCode"),
        errors=tuple(
            ErrorDetail(e.get("code"), e.get("message"), e.get("field"), e.get("statusCode"))
            for e in data.get("errors") or ()
        ),
        received_at=float(data.get("receivedAt") or 0.0),
    )


class RecordingDispatcher(WebhookDispatcher):
    """What the webhook receiver publishes to: records each event in PostgreSQL.

    :meth:`publish` stays synchronous (the receiver's contract) and starts the write;
    :meth:`flush` awaits the writes the current request started.
    """

    def __init__(self, relay: PostgresRelay) -> None:
        super().__init__(clock=relay.dispatcher.clock)
        self._relay = relay
        self._writes: dict[asyncio.Task[Any] | None, list[asyncio.Task[int]]] = {}

    def publish(self, event: WebhookEvent) -> None:
        """Start recording ``event`` (awaited by :meth:`flush`)."""
        self.published += 1
        write = asyncio.ensure_future(self._relay.record(event))
        self._writes.setdefault(asyncio.current_task(), []).append(write)

    async def flush(self) -> bool:
        """Wait for the current request's writes; False if one failed."""
        writes = self._writes.pop(asyncio.current_task(), [])
        results = await asyncio.gather(*writes, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for exc in failed:
            log.warning("could not record a webhook event (%s)", type(exc).__name__)
        return not failed


class PostgresRelay:
    """Relays webhook events between workers through PostgreSQL LISTEN/NOTIFY.

    Args:
        pool: an asyncpg pool (e.g. ``PostgresFlowStore.pool``) for writes and catch-up.
        listener: this worker's :class:`Listener` (one LISTEN connection per worker).
        dispatcher: the local dispatcher the worker's waiters subscribe to.
        prefix: the table name prefix.
        lookback: how many ids before the newest seen are re-read, so an event whose
            transaction committed late (after a newer one) is still picked up.
        poll_interval: seconds between safety re-reads when nothing is notified.
    """

    def __init__(
        self,
        pool: Any,
        listener: Listener,
        dispatcher: WebhookDispatcher,
        *,
        prefix: str = DEFAULT_PREFIX,
        lookback: int = 256,
        poll_interval: float = 5.0,
    ) -> None:
        self.tables = Tables(prefix)
        self.pool = pool
        self.listener = listener
        self.dispatcher = dispatcher
        self.recorder = RecordingDispatcher(self)
        self._lookback = lookback
        self._poll_interval = poll_interval
        self._floor: int | None = None
        self._newest = 0
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.relayed = 0
        listener.add(self.tables.events_channel, lambda payload: self._kick.set())
        listener.on_connect(self._catch_up)

    async def record(self, event: WebhookEvent) -> int:
        """Store ``event`` and notify every worker; returns its id.

        Raises:
            InvalidInputError: the signature id does not have the id syntax (nothing sent).
        """
        if not is_valid_id(event.signature_id):
            raise InvalidInputError(
                "signature_id", "an event's signature id must have the client's id syntax"
            )
        event_id = await self.pool.fetchval(
            f"WITH row AS (INSERT INTO {self.tables.events} (signature_id, body)"
            " VALUES ($1, $2::jsonb) RETURNING id)"
            " SELECT id FROM row, pg_notify($3, row.id::text)",
            event.signature_id,
            encode_event(event),
            self.tables.events_channel,
        )
        return int(event_id)

    async def start(self) -> None:
        """Start relaying (the listener must be started by its owner afterwards or before)."""
        if self._floor is None:
            newest = await self.pool.fetchval(f"SELECT max(id) FROM {self.tables.events}")
            self._floor = int(newest or 0)
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name="qes-postgres-relay")

    async def close(self) -> None:
        """Stop relaying."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _catch_up(self) -> None:
        self._kick.set()  # after a reconnection: read whatever was missed

    async def _pump(self) -> None:
        while True:
            await wait_event(self._kick, self._poll_interval)
            self._kick.clear()
            try:
                await self.fetch_new()
            except Exception as exc:
                log.warning("could not read webhook events (%s)", type(exc).__name__)
                await self.dispatcher.clock.sleep_until(
                    self.dispatcher.clock.time() + min(self._poll_interval, 1.0), passive=True
                )

    async def fetch_new(self) -> int:
        """Publish every event not relayed yet; returns how many."""
        low = max(self._floor or 0, self._newest - self._lookback)
        rows = await self.pool.fetch(
            f"SELECT id, signature_id, body::text FROM {self.tables.events}"
            " WHERE id > $1 ORDER BY id LIMIT 5000",
            low,
        )
        count = 0
        for event_id, signature_id, body in rows:
            if event_id in self._seen:
                continue
            self._remember(event_id)
            self.dispatcher.publish(decode_event(signature_id, body))
            count += 1
        self.relayed += count
        return count

    def _remember(self, event_id: int) -> None:
        self._seen.add(event_id)
        self._seen_order.append(event_id)
        self._newest = max(self._newest, event_id)
        while len(self._seen_order) > 4 * self._lookback:
            self._seen.discard(self._seen_order.popleft())

    async def prune(self, older_than: float) -> int:
        """Delete events recorded more than ``older_than`` seconds ago; returns how many."""
        status = await self.pool.execute(
            f"DELETE FROM {self.tables.events}"
            " WHERE recorded_at < now() - make_interval(secs => $1)",
            float(older_than),
        )
        return int(status.split()[-1])

    def aiohttp_routes(self, receiver: WebhookReceiver) -> list[web.RouteDef]:
        """The receiver's routes, answering only once the event is recorded (else 503).

        Build the receiver on :attr:`recorder`: ``WebhookReceiver(relay.recorder, auth)``.
        """
        handler = self._handler(receiver.aiohttp_handler)
        routes = [web.route("*", f"{receiver.prefix}/{{signature_id}}", handler)]
        if isinstance(receiver.auth, BearerAuth):
            routes.insert(0, web.route("*", receiver.token_path, handler))
        return routes

    def _handler(
        self, inner: Callable[[web.Request], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            response = await inner(request)
            if not await self.recorder.flush():
                return web.json_response(
                    {"error": "unavailable", "detail": "try again"}, status=503
                )
            return response

        return handler

    def __repr__(self) -> str:
        return f"PostgresRelay(prefix={self.tables.prefix!r}, relayed={self.relayed})"
