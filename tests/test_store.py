"""Flow stores: versions, leases with fencing tokens, the sweeper's list, SQLite off the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qes_async import (
    FakeClock,
    FlowNotFoundError,
    FlowStore,
    MemoryFlowStore,
    SQLiteFlowStore,
    StaleStateError,
)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FlowStore]:
    clock = FakeClock()
    if request.param == "memory":
        yield MemoryFlowStore(clock=clock)
        return
    async with SQLiteFlowStore(tmp_path / "flows.db", clock=clock) as sqlite_store:
        yield sqlite_store


def _clock(store: FlowStore) -> FakeClock:
    clock = store._clock  # type: ignore[attr-defined]
    assert isinstance(clock, FakeClock)
    return clock


async def test_create_then_load(store: FlowStore) -> None:
    assert isinstance(store, FlowStore)
    assert await store.create("f1", {"format": 1, "step": "create"}, due_at=50.0) == 1
    loaded = await store.load("f1")
    assert (loaded.flow_id, loaded.version, loaded.data) == (
        "f1",
        1,
        {"format": 1, "step": "create"},
    )
    assert (loaded.finished, loaded.due_at) == (False, 50.0)


async def test_create_twice_is_refused(store: FlowStore) -> None:
    await store.create("f1", {"a": 1})
    with pytest.raises(StaleStateError, match="exists already"):
        await store.create("f1", {"a": 2})
    assert (await store.load("f1")).data == {"a": 1}


async def test_load_unknown_flow(store: FlowStore) -> None:
    with pytest.raises(FlowNotFoundError, match="no stored flow with id 'nope'"):
        await store.load("nope")


async def test_save_with_the_expected_version_bumps_it(store: FlowStore) -> None:
    await store.create("f1", {"n": 0})
    assert await store.save("f1", {"n": 1}, expected_version=1) == 2
    assert await store.save("f1", {"n": 2}, expected_version=2, finished=True) == 3
    loaded = await store.load("f1")
    assert (loaded.version, loaded.data, loaded.finished) == (3, {"n": 2}, True)


async def test_stale_version_is_refused_and_nothing_changes(store: FlowStore) -> None:
    await store.create("f1", {"n": 0})
    await store.save("f1", {"n": 1}, expected_version=1)
    with pytest.raises(StaleStateError, match="version 1 is stale \\(now 2\\)"):
        await store.save("f1", {"n": 99}, expected_version=1)
    assert (await store.load("f1")).data == {"n": 1}


async def test_save_unknown_flow(store: FlowStore) -> None:
    with pytest.raises(FlowNotFoundError):
        await store.save("nope", {}, expected_version=1)


async def test_state_must_be_a_json_object(store: FlowStore) -> None:
    with pytest.raises(TypeError):
        await store.create("f1", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="JSON compliant"):
        await store.create("f2", {"x": float("nan")})


async def test_stored_state_is_a_copy(store: FlowStore) -> None:
    data = {"list": [1]}
    await store.create("f1", data)
    data["list"].append(2)
    loaded = await store.load("f1")
    loaded.data["list"].append(3)
    assert (await store.load("f1")).data == {"list": [1]}


async def test_lease_excludes_other_owners_until_it_expires(store: FlowStore) -> None:
    await store.create("f1", {})
    lease = await store.acquire("f1", "worker-a", ttl=60)
    with pytest.raises(StaleStateError, match="another worker holds the lease"):
        await store.acquire("f1", "worker-b", ttl=60)
    _clock(store).advance(61)
    taken = await store.acquire("f1", "worker-b", ttl=60)
    assert taken.token == lease.token + 1
    assert taken.owner == "worker-b"


async def test_renewing_keeps_the_token(store: FlowStore) -> None:
    await store.create("f1", {})
    first = await store.acquire("f1", "worker-a", ttl=60)
    _clock(store).advance(30)
    renewed = await store.acquire("f1", "worker-a", ttl=60)
    assert renewed.token == first.token
    assert renewed.expires_at == first.expires_at + 30


async def test_fencing_token_refuses_a_write_from_a_lost_lease(store: FlowStore) -> None:
    await store.create("f1", {"n": 0})
    old = await store.acquire("f1", "worker-a", ttl=10)
    _clock(store).advance(11)
    new = await store.acquire("f1", "worker-b", ttl=10)
    with pytest.raises(StaleStateError, match="lease was taken over"):
        await store.save("f1", {"n": 1}, expected_version=1, lease=old)
    assert await store.save("f1", {"n": 2}, expected_version=1, lease=new) == 2


async def test_release_lets_another_owner_in_at_once(store: FlowStore) -> None:
    await store.create("f1", {})
    lease = await store.acquire("f1", "worker-a", ttl=600)
    await store.release(lease)
    other = await store.acquire("f1", "worker-b", ttl=600)
    assert other.token == lease.token + 1
    await store.release(lease)  # a lost lease releases nothing
    with pytest.raises(StaleStateError):
        await store.acquire("f1", "worker-c", ttl=600)


async def test_acquire_unknown_flow(store: FlowStore) -> None:
    with pytest.raises(FlowNotFoundError):
        await store.acquire("nope", "worker-a", ttl=1)


async def test_unfinished_lists_soonest_due_first(store: FlowStore) -> None:
    await store.create("late", {}, due_at=300.0)
    await store.create("soon", {}, due_at=100.0)
    await store.create("undated", {})
    await store.create("done", {}, due_at=50.0)
    await store.save("done", {}, expected_version=1, finished=True, due_at=50.0)
    assert await store.unfinished() == ["soon", "late", "undated"]
    assert await store.unfinished(due_before=200.0) == ["soon"]
    assert await store.unfinished(limit=1) == ["soon"]


async def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    async with SQLiteFlowStore(path) as first:
        await first.create("f1", {"step": "consent"})
        await first.save("f1", {"step": "passcode"}, expected_version=1)
    async with SQLiteFlowStore(path) as second:
        loaded = await second.load("f1")
    assert (loaded.version, loaded.data) == (2, {"step": "passcode"})


async def test_sqlite_uses_wal_and_runs_off_the_loop(tmp_path: Path) -> None:
    async with SQLiteFlowStore(tmp_path / "flows.db") as sqlite_store:
        threads = await sqlite_store._run(lambda conn: threading.current_thread().name)
        mode = await sqlite_store._run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone())
    assert threads.startswith("qes-sqlite")
    assert threads != threading.current_thread().name
    assert mode == ("wal",)


async def test_a_cancelled_sqlite_write_is_all_or_nothing(tmp_path: Path) -> None:
    async with SQLiteFlowStore(tmp_path / "flows.db") as sqlite_store:
        await sqlite_store.create("f1", {"n": 0})
        task = asyncio.ensure_future(sqlite_store.save("f1", {"n": 1}, expected_version=1))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        loaded = await sqlite_store.load("f1")  # queued behind the write
        # all or nothing, and the version read is the one to write against
        assert (loaded.version, loaded.data) in ((2, {"n": 1}), (1, {"n": 0}))
        assert await sqlite_store.save("f1", {"n": 5}, expected_version=loaded.version) == (
            loaded.version + 1
        )


async def test_two_sqlite_stores_on_one_file_see_each_others_versions(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    async with SQLiteFlowStore(path) as a, SQLiteFlowStore(path) as b:
        await a.create("f1", {"n": 0})
        await b.save("f1", {"n": 1}, expected_version=1)
        with pytest.raises(StaleStateError):
            await a.save("f1", {"n": 2}, expected_version=1)


def test_reprs_hold_no_state(tmp_path: Path) -> None:
    assert repr(MemoryFlowStore()) == "MemoryFlowStore(flows=0)"
    assert (
        repr(SQLiteFlowStore(tmp_path / "x.db")) == f"SQLiteFlowStore({str(tmp_path / 'x.db')!r})"
    )
