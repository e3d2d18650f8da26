"""Any process can read a stored flow: the result of a finished one, or where an
unfinished one stands, with no lease taken and no call to the service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from flow_helpers import MOBILE, world

from qes_async import (
    Document,
    FlowEvent,
    FlowEventKind,
    FlowNotFoundError,
    FlowView,
    MemoryFlowStore,
    SignatureFlow,
    SignerInbox,
    make_pdf,
)


async def test_read_shows_progress_while_running_and_the_result_after(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    asking: asyncio.Queue[str] = asyncio.Queue()

    def on_event(event: FlowEvent) -> None:
        if event.kind is FlowEventKind.WAITING_FOR_SIGNER:
            asking.put_nowait(str(event.waiting_for))

    async with world(tmp_path) as w:
        inbox = SignerInbox(clock=w.clock)  # its deadlines are the flow's
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
            on_event=on_event,
        )
        run = asyncio.create_task(flow.run())
        assert await asyncio.wait_for(asking.get(), 10) == "consent"
        before = len(w.sandbox.request_log)
        waiting = await SignatureFlow.read(flow.flow_id, store=store)
        assert len(w.sandbox.request_log) == before  # nothing was asked of the service
        assert (waiting.finished, waiting.result) == (False, None)
        assert waiting.step == "consent"
        assert waiting.status == "user_consent_required"
        assert waiting.signature_id == flow.signature_id
        assert waiting.next_deadline is not None
        await _asked(inbox, flow.flow_id)
        consent = asyncio.create_task(inbox.submit_consent(flow.flow_id, True))
        assert await asyncio.wait_for(asking.get(), 10) == "passcode"
        await consent
        await _asked(inbox, flow.flow_id)
        await inbox.submit_passcode(flow.flow_id, w.sandbox.latest_passcode(flow.signature_id))
        result = await run
        done = await SignatureFlow.read(flow.flow_id, store=store)
    assert isinstance(done, FlowView)
    assert done.finished
    assert done.result is not None
    assert done.result.as_json() == result.as_json()


async def _asked(inbox: SignerInbox, flow_id: str) -> None:
    """The event says the flow is about to ask; wait until the inbox holds the question."""
    for _ in range(10_000):
        if inbox.pending(flow_id) is not None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the flow never asked")


async def test_read_of_an_unknown_flow_is_flow_not_found() -> None:
    with pytest.raises(FlowNotFoundError):
        await SignatureFlow.read("nobody", store=MemoryFlowStore())
