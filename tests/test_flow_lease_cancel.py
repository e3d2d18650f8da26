"""A run cancelled while its store is taking the lease gives the lease back once the take
lands, so a resume in the same process is not locked out for the whole lease_ttl."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flow_helpers import world

from qes_async import Document, Lease, MemoryFlowStore, SignatureFlow, make_pdf


class SlowTakeStore(MemoryFlowStore):
    """Its acquire goes on to the end even when the caller is cancelled, as a take on a
    thread (SQLite) or on a database server does."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.taking = asyncio.Event()

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        async def take() -> Lease:
            self.taking.set()
            await self.gate.wait()
            return await MemoryFlowStore.acquire(self, flow_id, owner, ttl)

        return await asyncio.shield(take())


async def test_a_cancel_during_the_lease_take_gives_the_lease_back(tmp_path: Path) -> None:
    store = SlowTakeStore()
    async with world(tmp_path) as w:
        flow = w.flow(store=store)
        run = asyncio.create_task(flow.run())
        await store.taking.wait()
        run.cancel()
        store.gate.set()
        await asyncio.gather(run, return_exceptions=True)
        for _ in range(5):  # the take lands, then its release runs
            await asyncio.sleep(0)
        again = await SignatureFlow.resume(
            flow.flow_id,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            **w.resume_kw(store),
        )
        result = await again.run()  # the old code: StaleStateError, another owner
    assert result.outcome.value == "signed"


async def test_the_in_memory_store_takes_and_gives_back_the_lease_without_a_task(
    tmp_path: Path,
) -> None:
    # Its acquire and release never suspend, so a task (and a shield) around them is a loop
    # iteration each for nothing; a subclass that may suspend (above) keeps them.
    made: list[str] = []
    loop = asyncio.get_running_loop()

    def factory(
        loop: asyncio.AbstractEventLoop, coro: object, **kw: object
    ) -> asyncio.Task[object]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kw)  # type: ignore[arg-type]

    store = MemoryFlowStore()
    async with world(tmp_path) as w:
        flow = w.flow(store=store)
        loop.set_task_factory(factory)  # type: ignore[arg-type]
        try:
            result = await flow.run()
        finally:
            loop.set_task_factory(None)
    assert result.outcome.value == "signed"
    assert made, "the factory saw no task at all: it measures nothing"
    lease_tasks = [name for name in made if name.startswith("MemoryFlowStore.")]
    assert lease_tasks == []  # the old code: ['MemoryFlowStore.acquire', ...release]
    assert (await store.load(flow.flow_id)) is not None
    held = await store.acquire(flow.flow_id, "someone-else", 60.0)  # released: free to take
    assert held.owner == "someone-else"
