"""The Worker in-process: its sweeper's choices and its counters."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import asyncpg
import attrs
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


async def _migrated(dsn: str, prefix: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, prefix)
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
        task = w.running.get("orphan-1")
        if task is not None:  # (the sweep's batch may have let it run to its end already)
            assert await task is None  # stopped: the store keeps why
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


async def test_what_a_worker_offers_before_start_and_after(pg_dsn: str, pg_prefix: str) -> None:
    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    await _migrated(pg_dsn, pg_prefix)
    worker = Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w6")
    # Before start: store, dispatcher and inbox exist and may be handed to flows.
    assert worker.store is not None
    assert worker.dispatcher is not None
    assert worker.inbox is not None
    with pytest.raises(RuntimeError, match=r"await worker\.start"):
        _ = worker.relay
    with pytest.raises(RuntimeError, match=r"await worker\.start"):
        _ = worker.signer
    async with worker:
        assert worker.relay is not None
        assert worker.signer is not None
        # store is the full PostgresFlowStore too (its sweeper queries included).
        assert callable(worker.store.orphaned)


async def test_any_worker_reads_a_flows_result_without_the_service(
    pg_dsn: str, pg_prefix: str
) -> None:
    from qes_async import FlowNotFoundError, Generation
    from qes_async._flow.state import FlowState, dump_state

    await _migrated(pg_dsn, pg_prefix)
    state = FlowState(
        flow_id="done-1",
        client_reference="c-1",
        mobile_number="+31612345678",
        documents=[],
        created_at=1.0,
    )
    state.generations.append(Generation(number=1, started_at=1.0, signature_id="sig-9"))
    state.outcome = "declined"
    from qes_async._flow import machine as fm

    state.step = fm.Step.DECLINED

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    async with Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w5") as w:
        await w.pg.create("done-1", dump_state(state))
        view = await w.result("done-1")
        with pytest.raises(FlowNotFoundError):
            await w.result("nobody")
    assert view.finished
    assert view.result is not None
    assert (view.result.outcome.value, view.signature_id) == ("declined", "sig-9")


async def test_worker_store_is_a_full_postgres_store_and_what_needs_start_says_so(
    pg_dsn: str, pg_prefix: str
) -> None:
    from qes_async.postgres import LeasingStore, PostgresDocumentSource, PostgresFlowStore

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    await _orphan(pg_dsn, pg_prefix, "orphan-s")
    worker = Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w4")
    assert isinstance(worker.store, LeasingStore)
    assert isinstance(worker.store, PostgresFlowStore)
    assert isinstance(worker.document_source, PostgresDocumentSource)
    assert worker.stats().running == 0
    # What reads the database says plainly that the worker has not started.
    with pytest.raises(RuntimeError, match="not open"):
        await worker.store.load("orphan-s")
    with pytest.raises(RuntimeError, match="not open"):
        await worker.result("orphan-s")
    with pytest.raises(RuntimeError, match=r"await worker\.start"):
        worker.drive(SimpleNamespace(flow_id="orphan-s"))  # type: ignore[arg-type]
    assert worker.running == {}
    async with worker:
        assert await worker.store.orphaned(idle_for=0) == ["orphan-s"]
        assert await worker.store.unfinished() == ["orphan-s"]
        lease = await worker.store.claim("orphan-s")
        assert lease.owner.startswith("w4/")
        assert worker.store.leases == {"orphan-s": lease}
        assert await worker.store.orphaned(idle_for=0) == []


async def test_any_worker_reads_where_an_unfinished_flow_stands(
    pg_dsn: str, pg_prefix: str
) -> None:
    from qes_async._flow import machine as fm
    from qes_async._flow.state import FlowState, Generation, dump_state

    await _migrated(pg_dsn, pg_prefix)
    state = FlowState("run-1", "c-1", "+31612345678", [], created_at=1.0)
    gen = Generation(number=1, started_at=1.0, signature_id="sig-3")
    gen.last_status, gen.deadlines = "confirmation_required", {"confirmation": 5000.0}
    state.generations.append(gen)
    state.step = fm.Step.PASSCODE

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    async with Worker(pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w3") as w:
        await w.pg.create("run-1", dump_state(state))
        view = await w.result("run-1")
    assert (view.finished, view.result) == (False, None)
    assert (view.step, view.status, view.signature_id) == (
        "passcode",
        "confirmation_required",
        "sig-3",
    )
    assert view.next_deadline == 5000.0


async def test_the_heartbeat_renews_every_lease_at_once_and_stops_a_flow_that_lost_its_own(
    pg_dsn: str, pg_prefix: str
) -> None:
    import asyncio

    from qes_async import FakeClock
    from qes_async.postgres import PostgresFlowStore

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    for flow_id in ("h-1", "h-2", "h-3"):
        await _orphan(pg_dsn, pg_prefix, flow_id)
    clock = FakeClock(time.time(), auto_advance=False)
    worker = Worker(
        pg_dsn, resume=resume, settings=_settings(pg_prefix), worker_id="w2", clock=clock
    )

    async def stalled() -> None:  # the loop stalled: its own heartbeat does not come
        await asyncio.Event().wait()

    worker._heartbeat = stalled  # type: ignore[method-assign]
    async with worker, PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=clock) as other:
        leases = {f: await worker.store.claim(f) for f in ("h-1", "h-2", "h-3")}
        parked = asyncio.create_task(asyncio.Event().wait())
        worker.running["h-3"] = parked  # type: ignore[assignment]
        # h-3's lease runs out (the loop stalled) and another worker takes it.
        clock.advance(worker.settings.lease_ttl + 1)
        await other.acquire("h-3", "elsewhere", 30)
        assert await worker.renew_leases() == 2
        await asyncio.sleep(0)
        assert parked.cancelled()
        assert worker.stats().leases_lost == 1
        expires = dict(
            await worker.pg.pool.fetch(
                f"SELECT flow_id, lease_expires FROM {pg_prefix}flows ORDER BY flow_id"
            )
        )
        worker.running.clear()
    now = clock.time()
    for flow_id in ("h-1", "h-2"):
        assert expires[flow_id] == pytest.approx(now + worker.settings.lease_ttl)
        assert worker.store.leases.get(flow_id, leases[flow_id]).token == leases[flow_id].token


async def _until(condition: Any, seconds: float = 2.0) -> bool:
    import asyncio

    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_the_heartbeat_and_the_sweeper_keep_the_injected_clock(
    pg_dsn: str, pg_prefix: str
) -> None:
    """On a fake clock that nobody moves, no lease is renewed and no sweep runs however
    much real time passes; moving the clock runs them (the old loops slept in real time)."""
    import asyncio

    from qes_async import FakeClock

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    await _migrated(pg_dsn, pg_prefix)
    clock = FakeClock(time.time(), auto_advance=False)
    settings = WorkerSettings(prefix=pg_prefix, orphan_grace=0, sweep_interval=60)
    worker = Worker(pg_dsn, resume=resume, settings=settings, worker_id="w-clock", clock=clock)
    beats: list[float] = []
    sweeps: list[float] = []
    async with worker:
        renew, sweep = worker.renew_leases, worker.sweep

        async def counted_renew() -> int:
            beats.append(clock.time())
            return await renew()

        async def counted_sweep() -> int:
            sweeps.append(clock.time())
            return await sweep()

        worker.renew_leases = counted_renew  # type: ignore[method-assign]
        worker.sweep = counted_sweep  # type: ignore[method-assign]
        await asyncio.sleep(0.3)
        assert (beats, sweeps) == ([], [])
        clock.advance(worker.settings.lease_ttl / 3 + 1)
        assert await _until(lambda: len(beats) == 1)
        clock.advance(settings.sweep_interval * 1.2 + 1)
        assert await _until(lambda: len(sweeps) >= 1)


async def test_a_sweep_resumes_first_the_flow_a_person_waits_on(
    pg_dsn: str, pg_prefix: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, pg_prefix)
        # Two machine flows due sooner than the one whose signer is being asked.
        for flow_id, step, due in (
            ("machine-1", "await_signed", 100.0),
            ("machine-2", "await_confirmation", 200.0),
            ("human", "passcode", 900.0),
        ):
            await conn.execute(
                f"INSERT INTO {pg_prefix}flows (flow_id, version, data, due_at, updated_at)"
                " VALUES ($1, 1, $2::jsonb, $3, $4)",
                flow_id,
                f'{{"step": "{step}"}}',
                due,
                time.time() - 3600,
            )
    finally:
        await conn.close()
    resumed: list[str] = []

    async def resume(flow_id: str) -> Any:
        resumed.append(flow_id)
        return SimpleNamespace(flow_id=flow_id, state=SimpleNamespace(finished=False))

    settings = attrs.evolve(_settings(pg_prefix), max_flows=1)  # room for one
    async with Worker(pg_dsn, resume=resume, settings=settings, worker_id="w2") as w:
        w.drive = lambda flow: None  # type: ignore[assignment,method-assign,return-value]
        assert await w.sweep() == 1
    assert resumed == ["human"]


async def test_a_run_reacquires_from_the_worker_only_when_its_lease_runs_short(
    pg_dsn: str, pg_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qes_async import FakeClock
    from qes_async.postgres import PostgresFlowStore

    await _orphan(pg_dsn, pg_prefix, "o-1")
    sent: list[str] = []
    acquire = PostgresFlowStore.acquire

    async def counted(self: Any, flow_id: str, owner: str, ttl: float) -> Any:
        sent.append(flow_id)
        return await acquire(self, flow_id, owner, ttl)

    monkeypatch.setattr(PostgresFlowStore, "acquire", counted)

    async def resume(flow_id: str) -> Any:
        raise AssertionError("not used")

    clock = FakeClock(time.time())
    settings = attrs.evolve(_settings(pg_prefix), lease_ttl=30.0)
    async with Worker(pg_dsn, resume=resume, settings=settings, clock=clock) as w:
        for task in w._tasks:  # the test renews itself: no background heartbeat
            task.cancel()
        assert await w.store.claim_orphans(idle_for=0, limit=5, skip=()) == ["o-1"]
        claimed = w.store.leases["o-1"]
        stored = await w.store.load("o-1")  # as the claim read it
        assert (stored.flow_id, stored.version) == ("o-1", 1)
        # The run's first acquire and a checkpoint's: the claim is fresh, no round trip.
        assert await w.store.acquire("o-1", "run", 300) == claimed
        clock.advance(14)
        assert await w.store.acquire("o-1", "run", 300) == claimed
        assert sent == []
        # Renewed by the heartbeat: fresh again, still none.
        assert await w.renew_leases() == 1
        clock.advance(14)
        assert (await w.store.acquire("o-1", "run", 300)).token == claimed.token
        assert sent == []
        # Short (the heartbeat late): the store is asked, and extends it.
        clock.advance(2)
        again = await w.store.acquire("o-1", "run", 300)
        assert sent == ["o-1"]
        assert (again.token, again.expires_at) == (claimed.token, clock.time() + 30)
