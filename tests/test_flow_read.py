"""Any process can read a stored flow: the result of a finished one, or where an
unfinished one stands, with no lease taken and no call to the service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from flow_helpers import MOBILE, world

from qes_async import (
    Document,
    FlowNotFoundError,
    FlowView,
    MemoryFlowStore,
    PasscodeRequest,
    SignatureFlow,
    SignerInbox,
    make_pdf,
)


async def test_read_shows_progress_while_running_and_the_result_after(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    inbox = SignerInbox()
    async with world(tmp_path) as w:
        flow = SignatureFlow(
            w.client,
            client_reference="client-1",
            clock=w.clock,
            signer=inbox,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
            store=store,
        )
        run = asyncio.create_task(flow.run())
        while not inbox.pending(flow.flow_id):
            await asyncio.sleep(0.01)
        before = len(w.sandbox.request_log)
        waiting = await SignatureFlow.read(flow.flow_id, store=store)
        assert len(w.sandbox.request_log) == before  # nothing was asked of the service
        assert (waiting.finished, waiting.result) == (False, None)
        assert waiting.step == "consent"
        assert waiting.status == "user_consent_required"
        assert waiting.signature_id == flow.signature_id
        assert waiting.next_deadline is not None
        await inbox.submit_consent(flow.flow_id, True)
        while not isinstance(inbox.pending(flow.flow_id), PasscodeRequest):
            await asyncio.sleep(0.01)
        await inbox.submit_passcode(flow.flow_id, w.sandbox.latest_passcode(flow.signature_id))
        result = await run
        done = await SignatureFlow.read(flow.flow_id, store=store)
    assert isinstance(done, FlowView)
    assert done.finished
    assert done.result is not None
    assert done.result.as_json() == result.as_json()


async def test_read_of_an_unknown_flow_is_flow_not_found() -> None:
    with pytest.raises(FlowNotFoundError):
        await SignatureFlow.read("nobody", store=MemoryFlowStore())
