"""A cancel while create_workflow is on the wire lets its answer land and records the
workflow, so a resume goes on with it instead of creating a second one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from flow_helpers import MOBILE, world

from chaos._checks import reached_logic
from qes_async import Document, MemoryFlowStore, QESClient, SignatureFlow, make_pdf
from qes_async.sandbox import SandboxServer


class SlowAnswerClient:
    """The client, whose create_workflow reaches the service at once but whose answer
    comes back only when the test opens the gate (a slow or congested network)."""

    def __init__(self, client: QESClient) -> None:
        self._client = client
        self.sent = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_workflow(self, *args: Any, **kw: Any) -> Any:
        workflow = await self._client.create_workflow(*args, **kw)
        self.sent.set()
        await self.gate.wait()
        return workflow


def _workflows(sandbox: SandboxServer) -> int:
    """Creates that reached the service, whatever it answered (the independent count)."""
    return sum(1 for r in sandbox.request_log if r.route == "create_workflow" and reached_logic(r))


async def test_a_cancel_during_create_then_a_resume_makes_one_workflow(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    async with world(tmp_path) as w:
        slow = SlowAnswerClient(w.client)
        flow = SignatureFlow(
            slow,
            client_reference="client-1",
            clock=w.clock,
            signer=w.signer(),
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
            store=store,
        )
        run = asyncio.create_task(flow.run())
        await slow.sent.wait()
        run.cancel()
        await asyncio.sleep(0)
        slow.gate.set()
        await asyncio.gather(run, return_exceptions=True)
        assert run.cancelled()
        again = await SignatureFlow.resume(
            flow.flow_id,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            **w.resume_kw(store),
        )
        result = await again.run()
        created = _workflows(w.sandbox)
    assert result.outcome.value == "signed"
    assert created == 1  # counted from what reached the service, not from the flow


class RenewingStore:
    """A store whose lease renewals can be held up: the first renewal after the create
    waits until the test lets it go (a slow store at the moment of the cancel)."""

    def __init__(self, store: MemoryFlowStore) -> None:
        self._store = store
        self.takes = 0
        self.held = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Any:
        self.takes += 1
        if self.takes == 2:  # the renewal at the checkpoint that records the workflow
            self.held.set()
            await self.go.wait()
        return await self._store.acquire(flow_id, owner, ttl)


class ClockJumpClient:
    """The client, whose create_workflow takes long enough that the lease runs short."""

    def __init__(self, client: QESClient, clock: Any, jump: float) -> None:
        self._client, self._clock, self._jump = client, clock, jump

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_workflow(self, *args: Any, **kw: Any) -> Any:
        workflow = await self._client.create_workflow(*args, **kw)
        self._clock.advance(self._jump)
        return workflow


async def test_a_cancel_while_the_workflow_is_being_recorded_still_records_it(
    tmp_path: Path,
) -> None:
    """The old code lost the workflow id when the cancel came during the checkpoint's lease
    renewal: the checkpoint was never written, and the resume created a second workflow."""
    memory = MemoryFlowStore()
    store = RenewingStore(memory)
    docs = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
    async with world(tmp_path) as w:
        memory._clock = w.clock  # type: ignore[attr-defined]
        flow = SignatureFlow(
            ClockJumpClient(w.client, w.clock, jump=40.0),
            client_reference="client-1",
            clock=w.clock,
            signer=w.signer(),
            documents=docs,
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
            store=store,  # type: ignore[arg-type]
            lease_ttl=60.0,
        )
        run = asyncio.create_task(flow.run())
        await asyncio.wait_for(store.held.wait(), 10)
        run.cancel()
        await asyncio.sleep(0)
        store.go.set()
        await asyncio.gather(run, return_exceptions=True)
        assert run.cancelled()
        again = await SignatureFlow.resume(flow.flow_id, documents=docs, **w.resume_kw(memory))
        result = await again.run()
        created = _workflows(w.sandbox)
    assert result.outcome.value == "signed"
    assert created == 1
