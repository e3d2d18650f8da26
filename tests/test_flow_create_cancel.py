"""A cancel while create_workflow is on the wire lets its answer land and records the
workflow, so a resume goes on with it instead of creating a second one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from flow_helpers import MOBILE, world

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
    return sum(1 for r in sandbox.request_log if r.route == "create_workflow" and r.processed)


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
