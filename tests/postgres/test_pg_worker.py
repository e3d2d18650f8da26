"""The Worker in-process: its sweeper's choices and its counters."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from pg_cluster import pg_dsn, pg_prefix

from qes_async.postgres import Worker, WorkerSettings, WorkerStats, migrate

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = pytest.mark.postgres


async def _orphan(dsn: str, prefix: str, flow_id: str) -> None:
    """A stored, unfinished flow that no worker holds, last saved long ago."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, prefix)
        await conn.execute(
            f"INSERT INTO {prefix}flows (flow_id, version, data, updated_at)"
            " VALUES ($1, 1, '{}', $2)",
            flow_id,
            time.time() - 3600,
        )
    finally:
        await conn.close()


def _settings(prefix: str) -> WorkerSettings:
    # no background sweeps: the test calls sweep() itself
    return WorkerSettings(prefix=prefix, orphan_grace=0, sweep_interval=3600)


async def test_a_flow_that_ended_before_the_claim_is_not_driven_again(
    pg_dsn: str, pg_prefix: str
) -> None:
    await _orphan(pg_dsn, pg_prefix, "ended-meanwhile")
    resumed: list[str] = []

    async def resume(flow_id: str) -> Any:
        # Between the sweeper's search and its claim, the flow's own worker finished it:
        # what the claim loads is a finished flow.
        resumed.append(flow_id)
        return SimpleNamespace(flow_id=flow_id, state=SimpleNamespace(finished=True))

    async with Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w9") as w:
        assert await w.sweep() == 0
        lease = await w.pg.pool.fetchrow(
            f"SELECT lease_owner FROM {pg_prefix}flows WHERE flow_id = 'ended-meanwhile'"
        )
        stats = w.stats()
    assert resumed == ["ended-meanwhile"]
    assert lease["lease_owner"] is None  # released for nobody: nothing left to do
    assert stats == WorkerStats("w9", 0, 0, 0, 0, 0, 0, 0)


async def test_stats_count_a_taken_over_flow_and_how_it_ended(pg_dsn: str, pg_prefix: str) -> None:
    await _orphan(pg_dsn, pg_prefix, "orphan-1")

    class Broken:
        flow_id = "orphan-1"
        state = SimpleNamespace(finished=False)

        async def run(self) -> None:
            raise RuntimeError("the service is down")

    async def resume(flow_id: str) -> Any:
        return Broken()

    async with Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w8") as w:
        assert await w.sweep() == 1
        assert await w.running["orphan-1"] is None  # stopped: the store keeps why
        stats = w.stats()
    assert (stats.taken_over, stats.stopped, stats.completed, stats.running) == (1, 1, 0, 0)


async def test_a_flow_that_cannot_be_resumed_does_not_stop_the_sweep(
    pg_dsn: str, pg_prefix: str
) -> None:
    for flow_id in ("orphan-a", "orphan-b"):
        await _orphan(pg_dsn, pg_prefix, flow_id)

    class Waiting:
        state = SimpleNamespace(finished=False)

        def __init__(self, flow_id: str) -> None:
            self.flow_id = flow_id

        async def run(self) -> None:
            return None

    broken: list[str] = []

    async def resume(flow_id: str) -> Any:
        if not broken:  # the first one the sweep tries, whichever that is
            broken.append(flow_id)
            raise ValueError("its state cannot be read")
        return Waiting(flow_id)

    settings = _settings(pg_prefix)
    async with Worker(pg_dsn, resume=resume, settings=settings, worker_id="w7") as w:
        assert await w.sweep() == 1  # the other one
        leases = dict(await w.pg.pool.fetch(f"SELECT flow_id, lease_owner FROM {pg_prefix}flows"))
    assert leases[broken[0]] is None  # let go, for a later sweep or a person to look at
