"""Where flows checkpoint: a small async protocol and two stores.

A store keeps, per flow id, a JSON object (the flow's versioned state), a *version* for
optimistic concurrency (every write names the version it read; a stale one raises
:class:`StaleStateError`), a *lease* with a fencing token so that one worker drives a flow at
a time, and two columns for a sweeper: finished, and when the flow is next due.

* :class:`MemoryFlowStore`: a dict, for tests and single-process scripts.
* :class:`SQLiteFlowStore`: the embedded default; stdlib ``sqlite3`` in WAL mode, every call
  run in one worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import attrs

from .._core.errors import FlowNotFoundError, StaleStateError
from .._runtime.clock import Clock, SystemClock
from .state import EncodedState, StateFormatError, StateText

__all__ = ["FlowStore", "Lease", "MemoryFlowStore", "SQLiteFlowStore", "StoredFlow"]

T = TypeVar("T")


@attrs.frozen
class StoredFlow:
    """One stored flow: its state, version and sweeper columns."""

    flow_id: str
    version: int
    data: dict[str, Any] = attrs.field(repr=False)
    finished: bool = False
    due_at: float | None = None
    updated_at: float = 0.0


@attrs.frozen
class Lease:
    """The right to drive one flow until ``expires_at``.

    ``token`` grows with every acquisition of the flow (a fencing token): a write carrying an
    older token than the latest is refused, even from a worker that thinks it still holds it.
    """

    flow_id: str
    owner: str
    token: int
    expires_at: float


@runtime_checkable
class FlowStore(Protocol):
    """Async storage of flow state with optimistic concurrency and leases."""

    async def create(
        self, flow_id: str, data: Mapping[str, Any], *, due_at: float | None = None
    ) -> int:
        """Store a new flow at version 1; StaleStateError if the id exists."""
        ...

    async def load(self, flow_id: str) -> StoredFlow:
        """The stored flow; FlowNotFoundError if there is none."""
        ...

    async def save(
        self,
        flow_id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        finished: bool = False,
        due_at: float | None = None,
        lease: Lease | None = None,
    ) -> int:
        """Replace the state if it is still at ``expected_version`` (and ``lease`` is the
        latest); returns the new version.  StaleStateError otherwise."""
        ...

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        """Take (or renew) the lease; StaleStateError while another owner holds it."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up (a no-op if it was lost already)."""
        ...

    async def unfinished(self, *, due_before: float | None = None, limit: int = 100) -> list[str]:
        """Ids of unfinished flows, soonest due first; only those due by ``due_before``."""
        ...


def _encode(data: Mapping[str, Any]) -> str:
    if type(data) is EncodedState or type(data) is StateText:  # a flow's checkpoint, as text
        return data.text
    if not isinstance(data, Mapping):
        raise TypeError("flow state must be a JSON object")
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _decode(flow_id: str, raw: str | bytes) -> dict[str, Any]:
    """A stored row's JSON, or StateFormatError naming the flow: never a parser's own error.

    A damaged row (not JSON, invalid UTF-8, nested deeper than the parser's stack) must
    end as the one typed error the flow and the CLI know how to report.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        data = json.loads(text)
    except (ValueError, RecursionError, TypeError) as exc:
        raise StateFormatError(
            f"flow {flow_id}: its stored state cannot be read ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict):
        raise StateFormatError(f"flow {flow_id}: its stored state is not a JSON object")
    return data


def _create_private(path: Path) -> None:
    """Create the database file 0600 if it is new: it holds mobile numbers. SQLite gives
    its -wal and -shm files the mode of the database file."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _stale(flow_id: str, why: str) -> StaleStateError:
    return StaleStateError(f"flow {flow_id}: {why}")


def _not_found(flow_id: str) -> FlowNotFoundError:
    return FlowNotFoundError(f"no stored flow with id {flow_id!r}.")


@attrs.define
class _Row:
    text: str
    version: int
    finished: bool
    due_at: float | None
    updated_at: float
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires: float = 0.0


class MemoryFlowStore:
    """An in-process store (state copied in and out as JSON text)."""

    # It writes only a checkpoint's text (qes_async._flow.state.StateText); declared here
    # and not inherited, so that a subclass reading the data gets it as a dict.
    _checkpoint_text: ClassVar[bool] = True

    # A flow given no store makes one of its own, held as long as the flow (no __dict__).
    __slots__ = ("_clock", "_rows")

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._rows: dict[str, _Row] = {}

    async def create(
        self, flow_id: str, data: Mapping[str, Any], *, due_at: float | None = None
    ) -> int:
        if flow_id in self._rows:
            raise _stale(flow_id, "a flow with this id exists already")
        self._rows[flow_id] = _Row(_encode(data), 1, False, due_at, self._clock.time())
        return 1

    async def load(self, flow_id: str) -> StoredFlow:
        row = self._row(flow_id)
        return StoredFlow(
            flow_id,
            row.version,
            _decode(flow_id, row.text),
            row.finished,
            row.due_at,
            row.updated_at,
        )

    async def save(
        self,
        flow_id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        finished: bool = False,
        due_at: float | None = None,
        lease: Lease | None = None,
    ) -> int:
        row = self._row(flow_id)
        text = _encode(data)
        if row.version != expected_version:
            raise _stale(flow_id, f"version {expected_version} is stale (now {row.version})")
        if lease is not None and lease.token != row.lease_token:
            raise _stale(flow_id, "the lease was taken over by another worker")
        row.text, row.version, row.finished, row.due_at = text, row.version + 1, finished, due_at
        row.updated_at = self._clock.time()
        return row.version

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        row = self._row(flow_id)
        now = self._clock.time()
        if row.lease_owner not in (None, owner) and row.lease_expires > now:
            raise _stale(flow_id, "another worker holds the lease")
        if row.lease_owner != owner or row.lease_expires <= now:
            row.lease_token += 1
        row.lease_owner, row.lease_expires = owner, now + ttl
        return Lease(flow_id, owner, row.lease_token, row.lease_expires)

    async def release(self, lease: Lease) -> None:
        row = self._rows.get(lease.flow_id)
        if row is not None and row.lease_token == lease.token:
            row.lease_owner, row.lease_expires = None, 0.0

    async def unfinished(self, *, due_before: float | None = None, limit: int = 100) -> list[str]:
        rows = [
            (row.due_at if row.due_at is not None else float("inf"), flow_id)
            for flow_id, row in self._rows.items()
            if not row.finished
            and (due_before is None or (row.due_at is not None and row.due_at <= due_before))
        ]
        return [flow_id for _, flow_id in sorted(rows)[:limit]]

    def _row(self, flow_id: str) -> _Row:
        try:
            return self._rows[flow_id]
        except KeyError:
            raise _not_found(flow_id) from None

    def __repr__(self) -> str:
        return f"MemoryFlowStore(flows={len(self._rows)})"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS qes_flows (
    flow_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    due_at REAL,
    updated_at REAL NOT NULL,
    lease_owner TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_expires REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS qes_flows_due ON qes_flows (finished, due_at);
"""


class SQLiteFlowStore:
    """A store in one SQLite file (WAL mode), safe for several processes.

    Every call runs in a single worker thread holding the connection, so the event loop
    never blocks; a write that is under way when its caller is cancelled still completes
    atomically (the stored state stays consistent).  Use as an async context manager or
    call :meth:`close`.

    Args:
        path: the database file (created with its table if missing).
        clock: the clock for ``updated_at`` and lease expiry (share the flow's).
        timeout: seconds SQLite waits for another process's lock.
    """

    _checkpoint_text: ClassVar[bool] = True  # see MemoryFlowStore

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, timeout: float = 5.0
    ) -> None:
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qes-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> SQLiteFlowStore:
        await self._run(lambda conn: None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._conn is not None:
            await self._run(lambda conn: conn.close())
            self._conn = None
        self._executor.shutdown(wait=False)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            _create_private(self.path)
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: func(self._connect()))

    async def create(
        self, flow_id: str, data: Mapping[str, Any], *, due_at: float | None = None
    ) -> int:
        text, now = _encode(data), self._clock.time()

        def insert(conn: sqlite3.Connection) -> int:
            try:
                conn.execute(
                    "INSERT INTO qes_flows (flow_id, version, data, due_at, updated_at)"
                    " VALUES (?, 1, ?, ?, ?)",
                    (flow_id, text, due_at, now),
                )
            except sqlite3.IntegrityError:
                raise _stale(flow_id, "a flow with this id exists already") from None
            return 1

        return await self._run(insert)

    async def load(self, flow_id: str) -> StoredFlow:
        def select(conn: sqlite3.Connection) -> StoredFlow:
            row = conn.execute(
                # As bytes: a row of invalid UTF-8 would otherwise fail inside sqlite3.
                "SELECT version, CAST(data AS BLOB), finished, due_at, updated_at"
                " FROM qes_flows WHERE flow_id = ?",
                (flow_id,),
            ).fetchone()
            if row is None:
                raise _not_found(flow_id)
            return StoredFlow(
                flow_id, row[0], _decode(flow_id, row[1]), bool(row[2]), row[3], row[4]
            )

        return await self._run(select)

    async def save(
        self,
        flow_id: str,
        data: Mapping[str, Any],
        *,
        expected_version: int,
        finished: bool = False,
        due_at: float | None = None,
        lease: Lease | None = None,
    ) -> int:
        text, now = _encode(data), self._clock.time()
        token = -1 if lease is None else lease.token

        def update(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE qes_flows SET version = version + 1, data = ?, finished = ?,"
                " due_at = ?, updated_at = ? WHERE flow_id = ? AND version = ?"
                " AND (? = -1 OR lease_token = ?)",
                (text, int(finished), due_at, now, flow_id, expected_version, token, token),
            )
            if cursor.rowcount == 1:
                return expected_version + 1
            row = conn.execute(
                "SELECT version FROM qes_flows WHERE flow_id = ?", (flow_id,)
            ).fetchone()
            if row is None:
                raise _not_found(flow_id)
            if row[0] != expected_version:
                raise _stale(flow_id, f"version {expected_version} is stale (now {row[0]})")
            raise _stale(flow_id, "the lease was taken over by another worker")

        return await self._run(update)

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        now = self._clock.time()

        def take(conn: sqlite3.Connection) -> Lease:
            conn.execute("BEGIN IMMEDIATE")
            try:
                lease = self._take(conn, flow_id, owner, now, ttl)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return lease

        return await self._run(take)

    @staticmethod
    def _take(conn: sqlite3.Connection, flow_id: str, owner: str, now: float, ttl: float) -> Lease:
        row = conn.execute(
            "SELECT lease_owner, lease_token, lease_expires FROM qes_flows WHERE flow_id = ?",
            (flow_id,),
        ).fetchone()
        if row is None:
            raise _not_found(flow_id)
        holder, token, expires = row
        if holder not in (None, owner) and expires > now:
            raise _stale(flow_id, "another worker holds the lease")
        if holder != owner or expires <= now:
            token += 1
        conn.execute(
            "UPDATE qes_flows SET lease_owner = ?, lease_token = ?, lease_expires = ?"
            " WHERE flow_id = ?",
            (owner, token, now + ttl, flow_id),
        )
        return Lease(flow_id, owner, token, now + ttl)

    async def release(self, lease: Lease) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE qes_flows SET lease_owner = NULL, lease_expires = 0"
                " WHERE flow_id = ? AND lease_token = ?",
                (lease.flow_id, lease.token),
            )

        await self._run(clear)

    async def unfinished(self, *, due_before: float | None = None, limit: int = 100) -> list[str]:
        def select(conn: sqlite3.Connection) -> list[str]:
            if due_before is None:
                sql = "SELECT flow_id FROM qes_flows WHERE finished = 0"
                args: tuple[Any, ...] = ()
            else:
                sql = "SELECT flow_id FROM qes_flows WHERE finished = 0 AND due_at <= ?"
                args = (due_before,)
            sql += " ORDER BY due_at IS NULL, due_at, flow_id LIMIT ?"
            return [row[0] for row in conn.execute(sql, (*args, limit))]

        return await self._run(select)

    async def list_flows(self, *, limit: int = 1000) -> list[StoredFlow]:
        """Every stored flow, finished or not, the most recently updated first (for
        ``qes-async flows``). Damaged rows raise :class:`StateFormatError`."""

        def select(conn: sqlite3.Connection) -> list[StoredFlow]:
            rows = conn.execute(
                "SELECT flow_id, version, CAST(data AS BLOB), finished, due_at, updated_at"
                " FROM qes_flows ORDER BY updated_at DESC, flow_id LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                StoredFlow(r[0], r[1], _decode(r[0], r[2]), bool(r[3]), r[4], r[5]) for r in rows
            ]

        return await self._run(select)

    def __repr__(self) -> str:
        return f"SQLiteFlowStore({str(self.path)!r})"
