"""The flow store suite (tests/test_store.py) run again on PostgreSQL, plus what is PG's own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pg_cluster import pg_dsn, pg_prefix
from test_store import (
    test_acquire_unknown_flow,
    test_create_then_load,
    test_create_twice_is_refused,
    test_fencing_token_refuses_a_write_from_a_lost_lease,
    test_lease_excludes_other_owners_until_it_expires,
    test_load_unknown_flow,
    test_release_lets_another_owner_in_at_once,
    test_renewing_keeps_the_token,
    test_save_unknown_flow,
    test_save_with_the_expected_version_bumps_it,
    test_stale_version_is_refused_and_nothing_changes,
    test_state_must_be_a_json_object,
    test_stored_state_is_a_copy,
    test_unfinished_lists_soonest_due_first,
)

from qes_async import FakeClock, FlowStore, InvalidInputError, StaleStateError
from qes_async.postgres import PostgresFlowStore, Tables, migrate

__all__ = [  # the shared suite, collected here against the fixture below
    "pg_dsn",
    "pg_prefix",
    "test_acquire_unknown_flow",
    "test_create_then_load",
    "test_create_twice_is_refused",
    "test_fencing_token_refuses_a_write_from_a_lost_lease",
    "test_lease_excludes_other_owners_until_it_expires",
    "test_load_unknown_flow",
    "test_release_lets_another_owner_in_at_once",
    "test_renewing_keeps_the_token",
    "test_save_unknown_flow",
    "test_save_with_the_expected_version_bumps_it",
    "test_stale_version_is_refused_and_nothing_changes",
    "test_state_must_be_a_json_object",
    "test_stored_state_is_a_copy",
    "test_unfinished_lists_soonest_due_first",
]

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(pg_dsn: str, pg_prefix: str) -> AsyncIterator[FlowStore]:
    """The shared suite's ``store``: PostgreSQL, fresh tables, a fake clock."""
    async with PostgresFlowStore(
        pg_dsn, prefix=pg_prefix, clock=FakeClock(), migrate=True, max_size=4
    ) as pg_store:
        yield pg_store


async def test_two_stores_on_one_database_see_each_others_versions(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with (
        PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as a,
        PostgresFlowStore(pg_dsn, prefix=pg_prefix) as b,
    ):
        await a.create("f1", {"n": 0})
        await b.save("f1", {"n": 1}, expected_version=1)
        with pytest.raises(StaleStateError, match="version 1 is stale \\(now 2\\)"):
            await a.save("f1", {"n": 2}, expected_version=1)


async def test_racing_acquires_give_the_lease_to_exactly_one(pg_dsn: str, pg_prefix: str) -> None:
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True, max_size=8) as db:
        await db.create("f1", {})
        results = await asyncio.gather(
            *(db.acquire("f1", f"worker-{n}", ttl=60) for n in range(8)),
            return_exceptions=True,
        )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, StaleStateError) for r in results if r not in won)
    assert won[0].token == 1


async def test_renew_extends_a_held_lease_but_never_takes_a_released_one_back(
    pg_dsn: str, pg_prefix: str
) -> None:
    clock = FakeClock()
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=clock, migrate=True) as db:
        await db.create("f1", {})
        lease = await db.acquire("f1", "w1/run", ttl=30)
        clock.advance(20)
        renewed = await db.renew(lease, 30)
        assert (renewed.token, renewed.expires_at) == (lease.token, clock.time() + 30)
        await db.release(renewed)  # the run ended
        with pytest.raises(StaleStateError, match="released or taken over"):
            await db.renew(renewed, 30)  # a heartbeat that looked a moment too late
        assert await db.orphaned(idle_for=0) == ["f1"]  # still free for a sweeper
        other = await db.acquire("f1", "w2/run", ttl=30)
        with pytest.raises(StaleStateError):
            await db.renew(lease, 30)  # taken over: the old holder cannot extend it
        assert (await db.acquire("f1", "w2/run", ttl=30)).token == other.token


async def test_orphaned_lists_unleased_and_expired_unfinished_flows(
    pg_dsn: str, pg_prefix: str
) -> None:
    clock = FakeClock()
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=clock, migrate=True) as db:
        for flow_id in ("held", "expired", "free", "done"):
            await db.create(flow_id, {})
        await db.save("done", {}, expected_version=1, finished=True)
        await db.acquire("held", "a", ttl=100)
        await db.acquire("expired", "b", ttl=5)
        assert await db.orphaned(idle_for=10) == []  # just saved: left to their creators
        clock.advance(10)
        assert await db.orphaned(idle_for=10) == ["expired", "free"]
        assert await db.orphaned(idle_for=10, limit=1) == ["expired"]


async def test_migration_is_idempotent_and_concurrency_safe(pg_dsn: str, pg_prefix: str) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(conn, pg_prefix) for conn in conns))
        await migrate(conns[0], pg_prefix)
        names = await conns[0].fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1 ORDER BY 1",
            pg_prefix.replace("_", "\\_") + "%",
        )
        version = await conns[0].fetchval(
            f"SELECT value FROM {pg_prefix}meta WHERE key = 'schema_version'"
        )
    finally:
        for conn in conns:
            await conn.close()
    assert [r[0] for r in names] == [
        f"{pg_prefix}{t}" for t in ("asks", "documents", "events", "flows", "meta", "signer")
    ]
    assert version == "2"


@pytest.mark.parametrize("prefix", ["", "Qes_", "1x", "a;drop", "x" * 41])
def test_unsafe_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidInputError, match="prefix"):
        Tables(prefix)


def test_repr_holds_no_dsn() -> None:
    store = PostgresFlowStore("postgresql://app:hunter2-secret@db/app", prefix="app_")
    assert repr(store) == "PostgresFlowStore(prefix='app_')"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qes_async.postgres", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_migrate_command_twice(pg_dsn: str, pg_prefix: str) -> None:
    for _ in range(2):
        done = _cli("migrate", "--dsn", pg_dsn, "--prefix", pg_prefix)
        assert (done.returncode, done.stdout) == (0, f"schema 2 ready (prefix {pg_prefix})\n")


def test_migrate_command_hides_the_dsn_on_failure() -> None:
    dsn = "postgresql://app:hunter2-secret@127.0.0.1:1/app"
    done = _cli("migrate", "--dsn", dsn)
    assert done.returncode == 1
    assert "hunter2" not in done.stderr + done.stdout
    assert done.stderr.startswith("error: migration failed (")


async def test_the_stores_pool_sends_no_reset_statements_on_release(
    pg_dsn: str, pg_prefix: str
) -> None:
    """Each call used to cost two round trips: the statement, and asyncpg's four reset
    statements when the connection went back to the pool. Counted by the server."""
    admin = await asyncpg.connect(pg_dsn)
    try:
        try:
            await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await admin.fetchval("SELECT pg_stat_statements_reset()")
        except asyncpg.PostgresError:
            pytest.skip("the server does not preload pg_stat_statements")
        query = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = $1"
        async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as store:
            await store.create("f-r", {"format": 1})
            for _ in range(10):
                await store.load("f-r")
            loads = await admin.fetchval(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE $1",
                f"SELECT version, data::text, finished, due_at, updated_at FROM {pg_prefix}flows%",
            )
            resets = await admin.fetchval(query, "RESET ALL")
        # a pool of asyncpg's own does send them (the control for the counter)
        pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
        try:
            await admin.fetchval("SELECT pg_stat_statements_reset()")
            for _ in range(10):
                await pool.fetchval("SELECT 1")
            control = await admin.fetchval(query, "RESET ALL")
        finally:
            await pool.close()
    finally:
        await admin.close()
    assert loads == 10
    assert resets == 0
    assert control == 10


async def test_orphans_a_person_waits_on_come_first_then_the_nearest_deadline(
    pg_dsn: str, pg_prefix: str
) -> None:
    clock = FakeClock()
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=clock, migrate=True) as db:
        # (step, due_at): the machine's flow is due soonest, but nobody looks at it
        for flow_id, step, due in (
            ("machine-soon", "await_confirmation", 50.0),
            ("no-deadline", "create", None),
            ("consent-later", "consent", 300.0),
            ("passcode-sooner", "passcode", 200.0),
            ("selfie-none", "selfie", None),
        ):
            await db.create(flow_id, {"step": step}, due_at=due)
        clock.advance(10)
        order = ["passcode-sooner", "consent-later", "selfie-none", "machine-soon", "no-deadline"]
        assert await db.orphaned(idle_for=10) == order
        assert await db.orphaned(idle_for=10, limit=1) == ["passcode-sooner"]
        claimed = await db.claim_orphaned("w1/s", 30, idle_for=10, limit=2)
        assert [flow.flow_id for _, flow in claimed] == order[:2]
        assert [flow.data["step"] for _, flow in claimed] == ["passcode", "consent"]
        lease, _ = claimed[0]
        assert (lease.owner, lease.token, lease.expires_at) == ("w1/s", 1, clock.time() + 30)
        # claimed: held now, so not orphaned, and its lease is the one a save needs
        assert await db.orphaned(idle_for=10) == order[2:]
        await db.save("passcode-sooner", {"step": "passcode"}, expected_version=1, lease=lease)
        skipped = await db.claim_orphaned("w2/s", 30, idle_for=10, skip=["selfie-none"])
        assert [flow.flow_id for _, flow in skipped] == order[3:]


async def test_workers_claiming_together_never_take_the_same_orphan(
    pg_dsn: str, pg_prefix: str
) -> None:
    clock = FakeClock()
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=clock, migrate=True) as db:
        for n in range(60):
            await db.create(f"o-{n}", {"step": "consent"}, due_at=float(n))
        clock.advance(10)
        rounds = await asyncio.gather(
            *(db.claim_orphaned(f"w{n}/s", 30, idle_for=10, limit=7) for n in range(12))
        )
        ids = [flow.flow_id for batch in rounds for _, flow in batch]
        assert len(ids) == len(set(ids))  # none claimed twice
        assert len(ids) == 60  # 12 x 7 asked for, and all 60 found a claimer
        assert await db.orphaned(idle_for=10) == []
