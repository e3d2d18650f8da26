# Table names are interpolated only from Tables, whose prefix is checked against
# [a-z_][a-z0-9_]*; every value is a bind parameter.
# ruff: noqa: S608
"""PostgresFlowStore: the FlowStore protocol on PostgreSQL, for many workers on many machines.

Same semantics as :class:`~qes_async.SQLiteFlowStore`: versioned JSON state (a stale writer is
refused), a lease per flow whose fencing token grows with every new holder, and the sweeper's
list.  Each operation is one statement, so it is atomic without explicit transactions, and a
caller cancelled mid-call leaves either the old or the new row.

Lease times come from the injected clock, as in the other stores: on several machines keep
their clocks in sync (NTP) well within the lease TTL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._core.errors import FlowNotFoundError, StaleStateError
from .._flow.machine import Step
from .._flow.store import Lease, StoredFlow, _decode, _encode
from .._runtime.clock import Clock, SystemClock
from ._schema import DEFAULT_PREFIX, Tables, migrate

__all__ = ["PostgresFlowStore"]


_QUIET: list[type] = []

#: The steps at which a flow asks its signer (a person waits on its page).
ASKING_STEPS = (Step.CONSENT.value, Step.PASSCODE.value, Step.SELFIE.value)
# The sweeper's order: the flows a person waits on first, then the nearest deadline (the
# window that closes first), the flows without one last. (Step values are [a-z_] only.)
_ASKING = ", ".join(f"'{step}'" for step in ASKING_STEPS)
_ORPHAN_ORDER = (
    f" ORDER BY CASE WHEN data->>'step' IN ({_ASKING}) THEN 0 ELSE 1 END,"
    " due_at IS NULL, due_at, flow_id"
)


def _urgency(flow: StoredFlow) -> tuple[bool, bool, float, str]:
    """What ``_ORPHAN_ORDER`` sorts by, for a claimed flow."""
    step = flow.data.get("step")
    due = flow.due_at
    return (step not in ASKING_STEPS, due is None, due or 0.0, flow.flow_id)


def _quiet_connection_class() -> type:
    """An asyncpg Connection whose release to the pool sends nothing (see ``open``)."""
    if not _QUIET:
        import asyncpg

        class QuietConnection(asyncpg.Connection):  # type: ignore[misc]
            def get_reset_query(self) -> str:  # asyncpg >= 0.30
                return ""

            def _get_reset_query(self) -> str:  # asyncpg 0.29
                return ""

        _QUIET.append(QuietConnection)
    return _QUIET[0]


def _stale(flow_id: str, why: str) -> StaleStateError:
    return StaleStateError(f"flow {flow_id}: {why}")


def _not_found(flow_id: str) -> FlowNotFoundError:
    return FlowNotFoundError(f"no stored flow with id {flow_id!r}.")


class PostgresFlowStore:
    """A :class:`~qes_async.FlowStore` in PostgreSQL (asyncpg), shared by every worker.

    Use as an async context manager (it opens a pool from ``dsn``) or pass an existing
    asyncpg ``pool``.  Create the tables first with ``python -m qes_async.postgres migrate``
    or :func:`~qes_async.postgres.migrate` (or ``migrate=True`` here).

    Args:
        dsn: a libpq connection string; never shown in reprs, logs or errors.
        pool: an asyncpg pool to use instead of ``dsn`` (not closed by :meth:`close`).
        prefix: the table name prefix (default ``qes_``).
        clock: the clock for ``updated_at`` and lease expiry (share the flows').
        migrate: create missing tables when opening.
        min_size: the pool's smallest size when it is opened from ``dsn``.
        max_size: the pool's largest size when it is opened from ``dsn``.
    """

    # It writes only a checkpoint's text: see qes_async._flow.state.StateText (declared
    # per class, not inherited, so that a subclass reading the data gets it as a dict).
    _checkpoint_text: ClassVar[bool] = True

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Any = None,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        migrate: bool = False,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise TypeError("give exactly one of dsn= or pool=")
        self.tables = Tables(prefix)
        self._dsn = dsn
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._clock = clock or SystemClock()
        self._migrate = migrate
        self._sizes = (min_size, max_size)

    @property
    def pool(self) -> Any:
        """The asyncpg pool (after :meth:`open`)."""
        if self._pool is None:
            raise RuntimeError("the store is not open: use 'async with' or await open()")
        return self._pool

    @property
    def clock(self) -> Clock:
        """The clock leases are timed with."""
        return self._clock

    async def open(self) -> PostgresFlowStore:
        """Open the pool (from ``dsn``) and migrate if asked.

        The pool it opens does not send asyncpg's reset statements (unlock, close, unlisten,
        reset) each time a connection goes back to it: the store's statements leave no
        session state behind, and those would double the round trips of every call. Keep
        session settings, LISTEN and session advisory locks off this pool (pass your own
        ``pool=`` for that).
        """
        if self._pool is None:
            import asyncpg

            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                connection_class=_quiet_connection_class(),
            )
        if self._migrate:
            await migrate(self._pool, self.tables.prefix)
        return self

    async def close(self) -> None:
        """Close the pool if this store opened it."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> PostgresFlowStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create(
        self, flow_id: str, data: Mapping[str, Any], *, due_at: float | None = None
    ) -> int:
        """Store a new flow at version 1; StaleStateError if the id exists."""
        text, now = _encode(data), self._clock.time()
        inserted = await self.pool.fetchval(
            f"INSERT INTO {self.tables.flows} (flow_id, version, data, due_at, updated_at)"
            " VALUES ($1, 1, $2::jsonb, $3, $4) ON CONFLICT (flow_id) DO NOTHING"
            " RETURNING version",
            flow_id,
            text,
            due_at,
            now,
        )
        if inserted is None:
            raise _stale(flow_id, "a flow with this id exists already")
        return 1

    async def load(self, flow_id: str) -> StoredFlow:
        """The stored flow; FlowNotFoundError if there is none."""
        row = await self.pool.fetchrow(
            f"SELECT version, data::text, finished, due_at, updated_at FROM {self.tables.flows}"
            " WHERE flow_id = $1",
            flow_id,
        )
        if row is None:
            raise _not_found(flow_id)
        return StoredFlow(flow_id, row[0], _decode(flow_id, row[1]), row[2], row[3], row[4])

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
        """Replace the state if still at ``expected_version`` and ``lease`` is the latest.

        Raises:
            StaleStateError: another writer saved first, or the lease was taken over.
            FlowNotFoundError: no such flow.
        """
        text, now = _encode(data), self._clock.time()
        token = None if lease is None else lease.token
        version = await self.pool.fetchval(
            f"UPDATE {self.tables.flows} SET version = version + 1, data = $2::jsonb,"
            " finished = $3, due_at = $4, updated_at = $5"
            " WHERE flow_id = $1 AND version = $6 AND ($7::bigint IS NULL OR lease_token = $7)"
            " RETURNING version",
            flow_id,
            text,
            finished,
            due_at,
            now,
            expected_version,
            token,
        )
        if version is not None:
            return int(version)
        current = await self.pool.fetchval(
            f"SELECT version FROM {self.tables.flows} WHERE flow_id = $1", flow_id
        )
        if current is None:
            raise _not_found(flow_id)
        if current != expected_version:
            raise _stale(flow_id, f"version {expected_version} is stale (now {current})")
        raise _stale(flow_id, "the lease was taken over by another worker")

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        """Take (or renew) the lease; StaleStateError while another owner holds it.

        Taking a lease from another owner (expired) or a released one bumps the fencing
        token; the same owner renewing an unexpired lease keeps it.
        """
        now = self._clock.time()
        row = await self.pool.fetchrow(
            f"UPDATE {self.tables.flows} SET lease_owner = $2, lease_expires = $3 + $4,"
            " lease_token = CASE WHEN lease_owner IS DISTINCT FROM $2 OR lease_expires <= $3"
            " THEN lease_token + 1 ELSE lease_token END"
            " WHERE flow_id = $1"
            " AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires <= $3)"
            " RETURNING lease_token, lease_expires",
            flow_id,
            owner,
            now,
            float(ttl),
        )
        if row is not None:
            return Lease(flow_id, owner, int(row[0]), float(row[1]))
        if await self._exists(flow_id):
            raise _stale(flow_id, "another worker holds the lease")
        raise _not_found(flow_id)

    async def renew(self, lease: Lease, ttl: float) -> Lease:
        """Extend a lease this owner still holds, keeping its fencing token.

        Unlike :meth:`acquire`, never takes a released lease back: StaleStateError when
        the lease was released, or taken over, since ``lease`` was granted.
        """
        expires = await self.pool.fetchval(
            f"UPDATE {self.tables.flows} SET lease_expires = $4::float8 + $5::float8"
            " WHERE flow_id = $1 AND lease_owner = $2 AND lease_token = $3"
            " RETURNING lease_expires",
            lease.flow_id,
            lease.owner,
            lease.token,
            self._clock.time(),
            float(ttl),
        )
        if expires is None:
            raise _stale(lease.flow_id, "the lease was released or taken over")
        return Lease(lease.flow_id, lease.owner, lease.token, float(expires))

    async def renew_many(self, leases: Sequence[Lease], ttl: float) -> dict[str, Lease]:
        """Extend many leases in one statement, as :meth:`renew` does each one.

        Returns the renewed leases by flow id; a lease missing from the answer was
        released or taken over since it was granted (where :meth:`renew` would raise
        StaleStateError). A worker's heartbeat renews all its flows' leases this way: one
        round trip however many flows it drives, so a pass never outlasts the leases.
        """
        if not leases:
            return {}
        rows = await self.pool.fetch(
            f"UPDATE {self.tables.flows} AS f SET lease_expires = $4::float8 + $5::float8"
            " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(flow_id, owner, token)"
            " WHERE f.flow_id = l.flow_id AND f.lease_owner = l.owner"
            " AND f.lease_token = l.token RETURNING f.flow_id, f.lease_expires",
            [lease.flow_id for lease in leases],
            [lease.owner for lease in leases],
            [lease.token for lease in leases],
            self._clock.time(),
            float(ttl),
        )
        expires = {row[0]: float(row[1]) for row in rows}
        return {
            lease.flow_id: Lease(lease.flow_id, lease.owner, lease.token, expires[lease.flow_id])
            for lease in leases
            if lease.flow_id in expires
        }

    async def release(self, lease: Lease) -> None:
        """Give the lease up (a no-op if it was lost already)."""
        await self.pool.execute(
            f"UPDATE {self.tables.flows} SET lease_owner = NULL, lease_expires = 0"
            " WHERE flow_id = $1 AND lease_token = $2",
            lease.flow_id,
            lease.token,
        )

    async def unfinished(self, *, due_before: float | None = None, limit: int = 100) -> list[str]:
        """Ids of unfinished flows, soonest due first; only those due by ``due_before``."""
        args: tuple[Any, ...] = ()
        where = ""
        if due_before is not None:
            where, args = " AND due_at <= $2", (due_before,)
        rows = await self.pool.fetch(
            f"SELECT flow_id FROM {self.tables.flows} WHERE NOT finished{where}"
            " ORDER BY due_at IS NULL, due_at, flow_id LIMIT $1",
            limit,
            *args,
        )
        return [row[0] for row in rows]

    async def orphaned(self, *, idle_for: float = 0.0, limit: int = 100) -> list[str]:
        """Ids of unfinished flows that no worker holds (no lease, or one that ran out).

        The sweeper resumes these: their worker crashed, or was stopped, mid-flow.  Only
        flows due now or not saved for ``idle_for`` seconds count, so a flow being created
        right now (stored, not yet leased) is left to its creator.
        """
        now = self._clock.time()
        rows = await self.pool.fetch(
            f"SELECT flow_id FROM {self.tables.flows} WHERE NOT finished"
            " AND (lease_owner IS NULL OR lease_expires <= $1)"
            f" AND (updated_at <= $2 OR due_at <= $1){_ORPHAN_ORDER} LIMIT $3",
            now,
            now - idle_for,
            limit,
        )
        return [row[0] for row in rows]

    async def claim_orphaned(
        self,
        owner: str,
        ttl: float,
        *,
        idle_for: float = 0.0,
        limit: int = 16,
        skip: Sequence[str] = (),
    ) -> list[tuple[Lease, StoredFlow]]:
        """Lease up to ``limit`` of the flows :meth:`orphaned` lists, in its order, in one
        statement, and return each lease with the flow as stored (most urgent first).

        Rows another worker is claiming at the same moment are skipped, not waited for
        (``FOR UPDATE SKIP LOCKED``): workers sweeping together each take the most urgent
        flows still free, and never the same one. Every lease taken bumps the flow's
        fencing token, as :meth:`acquire` does for a new holder. ``skip``: ids left out.
        """
        now, t = self._clock.time(), self.tables.flows
        rows = await self.pool.fetch(
            f"WITH picked AS (SELECT flow_id FROM {t} WHERE NOT finished"
            " AND (lease_owner IS NULL OR lease_expires <= $1)"
            " AND (updated_at <= $2 OR due_at <= $1) AND NOT (flow_id = ANY($5::text[]))"
            f"{_ORPHAN_ORDER} LIMIT $3 FOR UPDATE SKIP LOCKED)"
            f" UPDATE {t} AS f SET lease_owner = $4, lease_expires = $1 + $6::float8,"
            " lease_token = f.lease_token + 1 FROM picked WHERE f.flow_id = picked.flow_id"
            " RETURNING f.flow_id, f.lease_token, f.lease_expires, f.version, f.data::text,"
            " f.finished, f.due_at, f.updated_at",
            now,
            now - idle_for,
            limit,
            owner,
            list(skip),
            float(ttl),
        )
        claimed = [
            (
                Lease(row[0], owner, int(row[1]), float(row[2])),
                StoredFlow(row[0], row[3], _decode(row[0], row[4]), row[5], row[6], row[7]),
            )
            for row in rows
        ]
        claimed.sort(key=lambda pair: _urgency(pair[1]))
        return claimed

    async def _exists(self, flow_id: str) -> bool:
        found = await self.pool.fetchval(
            f"SELECT 1 FROM {self.tables.flows} WHERE flow_id = $1", flow_id
        )
        return found is not None

    def __repr__(self) -> str:
        return f"PostgresFlowStore(prefix={self.tables.prefix!r})"
