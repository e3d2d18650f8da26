"""A status read that gets no answer (a timeout, a dropped connection) does not end the flow.

After an approval whose answer was lost, the flow re-reads the status to learn whether the
approval landed. That read is a GET, safe to repeat: when it fails too, the flow tries it
again with backoff on the clock until the step's deadline, and only then ends, as an
expired step does. An unsafe call whose outcome is unknown is still never sent twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flow_helpers import World, world

from qes_async import (
    CallbackSigner,
    FakeClock,
    FlowOutcome,
    OutcomeUnknownError,
    RestartLimitError,
    RestartPolicy,
    Status,
    StatusReport,
    WaitTimeoutError,
)
from qes_async._waiting.polling import read_status_until


def _signer(w: World, status_faults: int | None) -> CallbackSigner:
    """A signer who, as it consents, makes the approval's answer get lost and the next
    ``status_faults`` status reads (None: every one) get no answer."""

    async def consent(request: Any) -> bool:
        w.sandbox.inject_fault("drop_after", route="approve_documents", times=1)
        w.sandbox.inject_fault("drop_before", route="get_signature_status", times=status_faults)
        return True

    async def passcode(request: Any) -> str:
        return w.sandbox.latest_passcode(request.signature_id)

    return CallbackSigner(consent=consent, passcode=passcode)


def _approvals(w: World, signature_id: str) -> int:
    return w.counts(signature_id)["approve_documents"]


async def test_a_status_read_without_answer_is_tried_again_and_the_flow_signs(
    tmp_path: Path,
) -> None:
    # The client's own 4 attempts end in OutcomeUnknownError (aiohttp itself may send a
    # GET again once on a dropped kept-alive connection, so each attempt may take two of
    # the faults): 12 faults make at least the flow's first re-read fail whole.
    async with world(tmp_path) as w:
        flow = w.flow(signer=_signer(w, 12))
        result = await flow.run()
        assert result.outcome is FlowOutcome.SIGNED
        assert result.signature_id is not None
        assert _approvals(w, result.signature_id) == 1  # the lost approval was not resent
        refused = [
            r
            for r in w.sandbox.request_log
            if r.route == "get_signature_status" and r.fault == "drop_before"
        ]
        assert len(refused) == 12  # every faulted read was made, and more came after them


async def test_status_reads_failing_until_the_wait_timeout_fail_the_flow(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = w.flow(signer=_signer(w, None), wait_timeout=900.0)
        with pytest.raises(WaitTimeoutError) as caught:
            await flow.run()
        assert caught.value.last is None
        state = flow.state
        assert state is not None
        assert state.outcome == "failed"
        assert state.error is not None
        assert state.error["type"] == "WaitTimeoutError"
        signature_id = state.generations[-1].signature_id
        assert signature_id is not None
        assert _approvals(w, signature_id) == 1
        reads = [r for r in w.sandbox.request_log if r.route == "get_signature_status"]
        assert len([r for r in reads if r.fault == "drop_before"]) > 8  # retried, not given up


async def test_status_reads_failing_past_the_consent_window_start_a_new_workflow(
    tmp_path: Path,
) -> None:
    """The consent window (2 h) ends before the wait timeout (24 h): at its end the flow
    needs a new workflow, as when the signer does not answer in time; the policy here
    allows none, so the flow fails saying so."""
    async with world(tmp_path) as w:
        flow = w.flow(signer=_signer(w, None), restart_policy=RestartPolicy(max_restarts=0))
        with pytest.raises(RestartLimitError):
            await flow.run()
        state = flow.state
        assert state is not None
        assert state.outcome == "failed"
        needed = [e for e in state.evidence if e["kind"] == "restart_needed"]
        assert [e["data"]["reason"] for e in needed] == ["deadline_passed"]
        signature_id = state.generations[-1].signature_id
        assert signature_id is not None
        assert _approvals(w, signature_id) == 1


class _Reads:
    """A status source that fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int | None, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise self.error
        return StatusReport(signature_id=signature_id, status=Status.SIGNED)


def _unknown() -> OutcomeUnknownError:
    return OutcomeUnknownError("get_signature_status: no answer", operation="x")


async def test_read_status_until_tries_a_read_without_answer_again() -> None:
    clock = FakeClock()
    reads = _Reads(3, _unknown())
    report = await read_status_until(
        reads, "sig", ["signed"], clock=clock, deadline=clock.time() + 3600
    )
    assert report.status.value == "signed"
    assert reads.calls == 4


async def test_read_status_until_gives_up_at_the_deadline_with_a_last_read_there() -> None:
    clock = FakeClock()
    deadline = clock.time() + 600
    reads = _Reads(None, _unknown())
    with pytest.raises(WaitTimeoutError) as caught:
        await read_status_until(reads, "sig", ["signed"], clock=clock, deadline=deadline)
    assert caught.value.targets == ("signed",)
    assert clock.time() == deadline
    assert reads.calls > 2


async def test_read_status_until_lets_an_error_that_is_not_transient_through() -> None:
    from qes_async import NotFoundError

    clock = FakeClock()
    error = NotFoundError(404, operation="get_signature_status")
    reads = _Reads(None, error)
    with pytest.raises(NotFoundError):
        await read_status_until(reads, "sig", ["signed"], clock=clock, deadline=clock.time() + 60)
    assert reads.calls == 1


def _signer_losing_the_confirmation(w: World, reads_back_after: float) -> CallbackSigner:
    """A signer whose passcode's confirmation reaches the service (which signs) but whose
    answer is lost, after which no status read gets an answer for ``reads_back_after``
    seconds: past the 1 h confirmation window."""

    async def consent(request: Any) -> bool:
        return True

    async def passcode(request: Any) -> str:
        w.sandbox.inject_fault("drop_after", route="confirm_signature", times=1)
        w.sandbox.inject_fault("drop_before", route="get_signature_status", times=None)
        w.clock.call_at(w.clock.time() + reads_back_after, w.sandbox.faults.clear)
        return w.sandbox.latest_passcode(request.signature_id)

    return CallbackSigner(consent=consent, passcode=passcode)


async def test_a_confirmation_in_flight_is_never_followed_by_a_new_workflow(
    tmp_path: Path,
) -> None:
    """The confirmation may have signed the workflow: when its window closes while no
    status read answers, the flow must not start a new workflow (the client would sign
    twice). It keeps reading, and takes the signature it finds."""
    async with world(tmp_path) as w:
        flow = w.flow(signer=_signer_losing_the_confirmation(w, 3600.0 + 900.0))
        result = await flow.run()
        assert result.outcome is FlowOutcome.SIGNED
        assert w.created() == 1
        signed = [s for s in w.sandbox.service.signatures.values() if s.status == "signed"]
        assert [s.signature_id for s in signed] == [result.signature_id]
        assert w.counts(result.signature_id)["confirm_signature"] == 1


async def test_a_confirmation_in_flight_leaves_the_flow_resumable_when_reads_never_answer(
    tmp_path: Path,
) -> None:
    """Past the wait timeout with the status still unreadable, the flow neither restarts
    nor ends failed (a signed document would be dropped): it stops resumable, and a later
    run reads the status first and finishes."""
    from qes_async import Document, MemoryFlowStore, SignatureFlow, make_pdf

    async with world(tmp_path) as w:
        store = MemoryFlowStore()
        documents = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
        flow = w.flow(
            documents=documents,
            signer=_signer_losing_the_confirmation(w, 5 * 3600.0),
            wait_timeout=2 * 3600.0,
            store=store,
            flow_id="f-1",
        )
        with pytest.raises(OutcomeUnknownError) as caught:
            await flow.run()
        assert "resume the flow" in str(caught.value).lower()
        state = flow.state
        assert state is not None
        assert state.outcome is None
        assert state.generations[-1].in_flight == "confirm"
        assert w.created() == 1
        w.clock.advance(4 * 3600.0)
        resumed = await SignatureFlow.resume("f-1", documents=documents, **w.resume_kw(store))
        result = await resumed.run()
        assert result.outcome is FlowOutcome.SIGNED
        assert w.created() == 1
