"""Crash and resume: stop a flow at every checkpoint, resume from SQLite, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import World, world

from qes_async import (
    CallbackSigner,
    Document,
    FlowNotFoundError,
    FlowOutcome,
    PasscodeRequest,
    SignatureFlow,
    SQLiteFlowStore,
    StaleStateError,
    StateFormatError,
    make_pdf,
)

CHECKPOINTS = 15  # saves of a clean completed run (asserted below)


class _StopAfter:
    """A store that cancels the flow's task right after its ``n``-th checkpoint."""

    def __init__(self, inner: SQLiteFlowStore, n: int) -> None:
        self.inner, self.n, self.saves = inner, n, 0
        self.task: asyncio.Task[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save(self, *args: Any, **kw: Any) -> int:
        version = await self.inner.save(*args, **kw)
        self.saves += 1
        if self.saves == self.n and self.task is not None:
            self.task.cancel()
        return version


def _assert_once_per_generation(w: World, result: Any) -> None:
    assert w.created() == len(result.generations)
    final = result.generations[-1]
    counts = w.counts(final.signature_id)
    assert counts["approve_documents"] == 1
    assert counts["confirm_signature"] == 1


async def test_a_clean_run_has_the_expected_checkpoints(tmp_path: Path) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        store = _StopAfter(db, n=0)
        await w.flow(store=store).run()  # type: ignore[arg-type]
    assert store.saves == CHECKPOINTS


@pytest.mark.parametrize("checkpoint", range(1, CHECKPOINTS + 1))
async def test_cancel_at_each_checkpoint_then_resume(tmp_path: Path, checkpoint: int) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        store = _StopAfter(db, checkpoint)
        flow = w.flow(store=store, documents=[_document(tmp_path)])
        store.task = asyncio.ensure_future(flow.run())
        with pytest.raises(asyncio.CancelledError):
            await store.task
        stored = await db.load(flow.flow_id)
        assert stored.finished is False or checkpoint == CHECKPOINTS
        resumed = await SignatureFlow.resume(flow.flow_id, **w.resume_kw(db))
        result = await resumed.run()
        assert result.outcome is FlowOutcome.SIGNED
        _assert_once_per_generation(w, result)
        assert w.created() == 1


async def test_resume_after_cancel_during_confirmation_does_not_confirm_twice(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        asked = asyncio.Event()

        async def typing_forever(request: PasscodeRequest) -> str:
            asked.set()
            await asyncio.Event().wait()  # the worker dies while the signer is being asked
            return ""

        signer = CallbackSigner(consent=lambda request: True, passcode=typing_forever)
        flow = w.flow(store=db, documents=[_document(tmp_path)], signer=signer)
        task = asyncio.ensure_future(flow.run())
        await asyncio.wait_for(asked.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state = (await db.load(flow.flow_id)).data
        assert state["step"] == "passcode"
        result = await (await SignatureFlow.resume(flow.flow_id, **w.resume_kw(db))).run()
        _assert_once_per_generation(w, result)


async def test_resume_with_documents_given_as_bytes(tmp_path: Path) -> None:
    data = make_pdf("Loan")
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        store = _StopAfter(db, 3)
        flow = w.flow(store=store, documents=[Document.from_bytes("loan.pdf", data)])
        store.task = asyncio.ensure_future(flow.run())
        with pytest.raises(asyncio.CancelledError):
            await store.task
        with pytest.raises(Exception, match="Pass the same document"):
            await SignatureFlow.resume(flow.flow_id, **w.resume_kw(db))
        docs = [Document.from_bytes("loan.pdf", data)]
        resumed = await SignatureFlow.resume(flow.flow_id, documents=docs, **w.resume_kw(db))
        assert (await resumed.run()).outcome is FlowOutcome.SIGNED


async def test_resume_of_an_unknown_flow(tmp_path: Path) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        with pytest.raises(FlowNotFoundError):
            await SignatureFlow.resume("nope", **w.resume_kw(db))


async def test_resume_refuses_an_unknown_state_version(tmp_path: Path) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        await db.create("future", {"format": 99})
        with pytest.raises(StateFormatError, match="format 99 is not supported"):
            await SignatureFlow.resume("future", **w.resume_kw(db))


_CHILD = """
import asyncio, sys
from qes_async import (CallbackSigner, Document, FakeClock, PollingWaiter, QESClient,
                       SignatureFlow, SQLiteFlowStore)

async def main(url, cid, secret, db, pdf):
    clock = FakeClock()
    async def passcode(request):
        print("ASKED", flush=True)
        await asyncio.Event().wait()
    async with QESClient(cid, secret, base_url=url, clock=clock) as client, \\
            SQLiteFlowStore(db, clock=clock) as store:
        flow = SignatureFlow(client, documents=[Document.from_path(pdf)],
            mobile_number="+31612345678", client_reference="client-1", clock=clock,
            signer=CallbackSigner(consent=lambda r: True, passcode=passcode),
            waiter=PollingWaiter(client, clock=clock), store=store, flow_id="killed",
            download_dir=db + ".signed")
        await flow.run()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_killed_process_resumes_from_sqlite(tmp_path: Path) -> None:
    db_path = tmp_path / "f.db"
    pdf = _document(tmp_path).path
    async with world(tmp_path) as w:
        s = w.sandbox
        args = [s.url, s.client_id, s.client_secret, str(db_path), str(pdf)]
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            *args,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line == b"ASKED\n"
        child.send_signal(signal.SIGKILL)
        await child.wait()
        async with SQLiteFlowStore(db_path, clock=w.clock) as db:
            assert (await db.load("killed")).data["step"] == "passcode"
            with pytest.raises(StaleStateError, match="another worker holds the lease"):
                await (await SignatureFlow.resume("killed", **w.resume_kw(db))).run()
            w.clock.advance(301)  # the dead worker's lease runs out
            resumed = await SignatureFlow.resume("killed", **w.resume_kw(db))
            result = await resumed.run()
        assert result.outcome is FlowOutcome.SIGNED
        _assert_once_per_generation(w, result)


def _document(tmp_path: Path) -> Document:
    path = tmp_path / "loan.pdf"
    path.write_bytes(make_pdf("Loan"))
    return Document.from_path(path)


async def test_resumed_download_removes_partial_files_of_a_killed_run(tmp_path: Path) -> None:
    """A worker killed mid-download leaves a hidden temp file; the next run cleans it."""
    async with world(tmp_path) as w:
        flow = w.flow(flow_id="flow-partial")
        folder = tmp_path / "signed" / "flow-partial"
        folder.mkdir(parents=True)
        (folder / ".qes-killed.part").write_bytes(b"%PDF-half")
        (folder / "keep-me.txt").write_text("not ours to delete")
        result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert (folder / "keep-me.txt").exists()


async def test_a_network_in_trouble_stops_the_flow_resumable_not_failed(tmp_path: Path) -> None:
    """Every approval answered 5xx: its outcome is unknown each time. The flow gives up for
    now but stays resumable, and once the service answers again it signs, approving once."""
    from qes_async import OutcomeUnknownError

    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        w.sandbox.inject_fault("server_error", route="approve_documents", rate=1.0)
        flow = w.flow(store=db, outcome_grace=5.0)
        with pytest.raises(OutcomeUnknownError):
            await flow.run()
        stored = (await db.load(flow.flow_id)).data
        assert stored["step"] != "failed"
        assert stored.get("outcome") is None
        w.sandbox.faults.clear()
        again = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
        resumed = await SignatureFlow.resume(
            flow.flow_id, documents=again, **w.resume_kw(db, outcome_grace=5.0)
        )
        result = await resumed.run()
        assert result.outcome is FlowOutcome.SIGNED
        _assert_once_per_generation(w, result)


class _StopAtStep:
    """A store that cancels the flow's task right after it checkpoints ``step``."""

    def __init__(self, inner: SQLiteFlowStore, step: str) -> None:
        self.inner, self.step = inner, step
        self.task: asyncio.Task[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save(self, flow_id: str, data: Any, **kw: Any) -> int:
        version = await self.inner.save(flow_id, data, **kw)
        if data["step"] == self.step and self.task is not None:
            self.task.cancel()
        return version


async def test_a_flow_resumed_onto_invalid_signature_restarts_and_signs(tmp_path: Path) -> None:
    from qes_async.sandbox import ExtractedDetails, IdentityCase

    # The certificate details will not match: after the confirmation the signature turns
    # invalid_signature while no worker runs the flow; the resumed run must restart.
    case = IdentityCase(
        flow_kind="pending_verification",
        case_status="pending",
        extracted=ExtractedDetails("Jane", "Doe", "XX9999999"),
    )
    async with (
        world(tmp_path, {"client-1": case}) as w,
        SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db,
    ):
        stopper = _StopAtStep(db, "await_signed")
        flow = w.flow(store=stopper, documents=[_document(tmp_path)])
        stopper.task = asyncio.ensure_future(flow.run())
        with pytest.raises(asyncio.CancelledError):
            await stopper.task
        w.clock.advance(3600)  # the service checks the details meanwhile
        result = await (await SignatureFlow.resume(flow.flow_id, **w.resume_kw(db))).run()
    assert result.outcome is FlowOutcome.SIGNED
    assert [g.ended for g in result.generations] == ["invalid_signature", "signed"]


class _StopWhenInFlight:
    """A store that cancels the flow's task right after it marks ``call`` in flight (the
    worker dies before the call is sent)."""

    def __init__(self, inner: SQLiteFlowStore, call: str, clock: Any) -> None:
        self.inner, self.call, self.clock = inner, call, clock
        self.task: asyncio.Task[Any] | None = None
        self.marked_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def save(self, flow_id: str, data: Any, **kw: Any) -> int:
        version = await self.inner.save(flow_id, data, **kw)
        gen = data["generations"][-1]
        if gen.get("in_flight") == self.call and self.task is not None:
            self.marked_at = self.clock.time()
            self.task.cancel()
        return version


async def _resume_after_unsent_approval(tmp_path: Path, later: float) -> tuple[float, Any]:
    """Stop a flow right after it marked its approval in flight, resume it ``later``
    seconds after that, and return how long (fake seconds) it took to ask for consent
    again, and the result."""
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        store = _StopWhenInFlight(db, "approve", w.clock)
        flow = w.flow(store=store, outcome_grace=30.0)
        store.task = asyncio.ensure_future(flow.run())
        with pytest.raises(asyncio.CancelledError):
            await store.task
        assert store.marked_at is not None
        w.clock.set_time(store.marked_at + later)
        resumed_at = w.clock.time()
        signer = w.signer()
        asked: list[float] = []
        inner = signer._consent

        async def consent(request: Any) -> bool:
            asked.append(w.clock.time())
            return bool(await inner(request))

        signer._consent = consent
        again = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
        resumed = await SignatureFlow.resume(
            flow.flow_id, documents=again, **w.resume_kw(db, signer=signer, outcome_grace=30.0)
        )
        result = await resumed.run()
        _assert_once_per_generation(w, result)
        return asked[0] - resumed_at, result


async def test_a_takeover_after_an_unsent_approval_asks_again_without_waiting_the_grace(
    tmp_path: Path,
) -> None:
    """The new worker comes after the dead one's lease (here 5 minutes): the grace counted
    from the send has passed, so the status it reads (still user_consent_required: the
    approval never left) decides at once."""
    waited, result = await _resume_after_unsent_approval(tmp_path, later=301.0)
    assert result.outcome is FlowOutcome.SIGNED
    assert waited < 5.0  # fake seconds; the old code waited the whole grace (30 s) here


async def test_a_resume_right_after_an_unsent_approval_waits_what_is_left_of_the_grace(
    tmp_path: Path,
) -> None:
    """Negative control: resumed 10 s after the approval was marked, the flow still gives
    its outcome the remaining 20 s to show before it approves again."""
    waited, result = await _resume_after_unsent_approval(tmp_path, later=10.0)
    assert result.outcome is FlowOutcome.SIGNED
    assert waited >= 20.0 - 1e-6
