"""A create_workflow whose answer is lost cannot be settled: the contract has no
idempotency key and no way to list a client's workflows. The flow goes on with a new
workflow and reports the possible orphan in its result, its events and its log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import MOBILE, world

from qes_async import (
    Document,
    FlowEvent,
    FlowEventKind,
    MemoryFlowStore,
    QESClient,
    SignatureFlow,
    make_pdf,
)
from qes_async._flow.state import parse_state


def _creates(sandbox: object) -> list[object]:
    return [r for r in sandbox.request_log if r.route == "create_workflow"]  # type: ignore[attr-defined]


async def test_a_lost_create_answer_is_reported_as_a_possible_orphan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[FlowEvent] = []
    async with world(tmp_path) as w:
        w.sandbox.script_faults(["drop_after"], route="create_workflow")
        flow = SignatureFlow(
            w.client,
            client_reference="client-1",
            clock=w.clock,
            signer=w.signer(),
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
            on_event=events.append,
        )
        with caplog.at_level(logging.WARNING, logger="qes_async"):
            result = await flow.run()
        creates = _creates(w.sandbox)
    assert result.outcome.value == "signed"
    # What reached the service: two workflows, the first one's answer lost.
    assert [(r.processed, r.fault) for r in creates] == [(True, "drop_after"), (True, None)]  # type: ignore[attr-defined]
    assert result.unconfirmed_creates == 1
    assert [e.kind for e in events].count(FlowEventKind.CREATE_UNCONFIRMED) == 1
    assert any("create_workflow got no answer" in r.getMessage() for r in caplog.records)


async def test_a_clean_run_reports_no_unconfirmed_create(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = SignatureFlow(
            w.client,
            client_reference="client-1",
            clock=w.clock,
            signer=w.signer(),
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
        )
        result = await flow.run()
    assert result.unconfirmed_creates == 0


class _Crash(BaseException):
    """The process dying mid-call: no handler of the flow catches it."""


class CrashAfterCreate:
    """The client, whose create_workflow reaches the service and then the process dies."""

    def __init__(self, client: QESClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def create_workflow(self, *args: Any, **kw: Any) -> Any:
        await self._client.create_workflow(*args, **kw)
        raise _Crash


async def test_a_resume_after_a_crash_during_create_counts_the_unknown_create(
    tmp_path: Path,
) -> None:
    store = MemoryFlowStore()
    docs = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
    async with world(tmp_path) as w:
        flow = SignatureFlow(
            CrashAfterCreate(w.client),
            client_reference="client-1",
            clock=w.clock,
            signer=w.signer(),
            documents=docs,
            waiter=w.waiter(),
            download_dir=tmp_path / "signed",
            mobile_number=MOBILE,
            store=store,
        )
        with pytest.raises(_Crash):
            await flow.run()
        crashed = parse_state((await store.load(flow.flow_id)).data)
        assert crashed.generations[0].in_flight == "create"
        again = await SignatureFlow.resume(flow.flow_id, documents=docs, **w.resume_kw(store))
        result = await again.run()
        creates = _creates(w.sandbox)
    assert result.outcome.value == "signed"
    assert len(creates) == 2  # the crashed one made a workflow nobody uses
    assert result.unconfirmed_creates == 1
