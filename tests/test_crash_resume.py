"""Crash and resume: a worker process is SIGKILLed at random moments and restarted; at the
end every flow has completed exactly once.

The sandbox runs in this process on the real clock (it outlives every worker); the worker
(``tests/crash_worker.py``) runs as a separate process over loopback, checkpoints every flow
to one SQLite file and, on each start, resumes the unfinished flows and starts the ones the
store does not know. 200 flows with 4 kills take about 15 s of wall time on 2 cores.

The precise guarantee, from the sandbox's own records:

* per flow, exactly one workflow reached ``signed``, and it is the generation the stored
  state names; every flow has one generation;
* per workflow (signature id), at most one processed approval and at most one processed
  confirmation; the signed one has exactly one of each;
* a kill after ``create_workflow`` was sent but before its answer was checkpointed leaves
  the flow's in-flight marker ``create`` and the resumed flow creates another workflow (the
  contract has no idempotency key). Such *orphan* workflows are counted and reported; the
  guarantee for them is that nothing after the creation ever touches them (no upload, no
  approval, no confirmation).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import register_secret

from chaos._checks import count_duplicates, reached_logic
from qes_async import SQLiteFlowStore, make_pdf
from qes_async._flow.state import FlowState, parse_state
from qes_async.sandbox import SandboxServer, sandbox_ca

WORKER = Path(__file__).with_name("crash_worker.py")
FLOWS = 200
KILLS = 4
SEED = 20240607
MOBILE = "+31612345678"
# Hang guards only: a healthy run needs a fraction of these.
READY_TIMEOUT = 30.0
FINAL_TIMEOUT = 90.0

pytestmark = pytest.mark.slow


class WorkerRun:
    """One worker process and the lines it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr = stderr
        self.lines: list[str] = []
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode().strip()
            self.lines.append(text)
            if text == "ready":
                self.ready.set()
            self.changed.set()

    async def progressed(self, count: int) -> None:
        """Return once this run reported ``count`` flows done."""
        while len(self.done()) < count:
            self.changed.clear()
            await self.changed.wait()

    def value(self, prefix: str) -> int:
        return int(next(line for line in self.lines if line.startswith(prefix)).split()[1])

    def done(self) -> list[str]:
        return [line.split()[1] for line in self.lines if line.startswith("done ")]

    def errors(self) -> str:
        return self.stderr.read_text()[-2000:]


async def start_worker(sandbox: SandboxServer, tmp: Path, number: int) -> WorkerRun:
    env = {
        **os.environ,
        "QES_CLIENT_ID": sandbox.client_id,
        "QES_CLIENT_SECRET": sandbox.client_secret,
    }
    stderr = tmp / f"worker-{number}.err"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            *("--url", sandbox.url, "--db", str(tmp / "flows.db")),
            *("--docs", str(tmp / "docs"), "--out", str(tmp / "signed")),
            *("--ca", str(tmp / "ca.pem"), "--flows", str(FLOWS)),
            env=env,
            cwd=tmp,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    run = WorkerRun(proc, stderr)
    await asyncio.wait_for(run.ready.wait(), READY_TIMEOUT)
    return run


def signed_count(sandbox: SandboxServer) -> int:
    return sum(sig.status == "signed" for sig in sandbox.service.signatures.values())


async def load_states(db: Path) -> dict[str, tuple[bool, FlowState]]:
    async with SQLiteFlowStore(db) as store:
        states = {}
        for number in range(FLOWS):
            stored = await store.load(f"flow-{number:04d}")
            states[stored.flow_id] = (stored.finished, parse_state(stored.data))
        return states


async def test_killed_workers_resume_and_every_flow_completes_exactly_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    (tmp_path / "docs").mkdir()
    for number in range(FLOWS):
        pdf = make_pdf(f"Contract {number}")
        (tmp_path / "docs" / f"doc-{number:04d}.pdf").write_bytes(pdf)
    (tmp_path / "ca.pem").write_bytes(sandbox_ca().certificate_pem)

    async with SandboxServer(processing_delay=0.05, seed=SEED) as sandbox:
        register_secret(sandbox.client_secret, MOBILE)
        runs: list[WorkerRun] = []
        kills: list[tuple[int, float, int]] = []  # (flows done, delay, flows signed at kill)
        for number in range(KILLS):
            run = await start_worker(sandbox, tmp_path, number)
            runs.append(run)
            # A random moment: after a random number of flows ended in this run, plus a
            # random fraction of a second (so the kill lands in any step of the others).
            target, delay = rng.randint(1, 40), rng.uniform(0.0, 0.5)
            await asyncio.wait_for(run.progressed(target), READY_TIMEOUT)
            await asyncio.sleep(delay)
            assert run.proc.returncode is None, (
                f"worker {number} ended before its kill: {run.lines[-3:]} {run.errors()}"
            )
            run.proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(run.proc.wait(), 10) == -signal.SIGKILL
            await run.reader
            kills.append((target, round(delay, 2), signed_count(sandbox)))
        last = await start_worker(sandbox, tmp_path, KILLS)
        runs.append(last)
        code = await asyncio.wait_for(last.proc.wait(), FINAL_TIMEOUT)
        await last.reader
        assert code == 0, f"final worker exited {code}: {last.lines[-5:]} {last.errors()}"
        assert last.lines[-1] == "finished"

        states = await load_states(tmp_path / "flows.db")
        signatures = dict(sandbox.service.signatures)
        processed = Counter(
            (record.route, record.signature_id)
            for record in sandbox.request_log
            if record.processed
        )
        touched = Counter(
            record.signature_id
            for record in sandbox.request_log
            if record.processed and record.route != "create_workflow"
        )
        # The independent count (the chaos run's): every unsafe call that reached the
        # service, whatever it answered, against one of each per signature. A kill during
        # an upload leaves its outcome unknown, and the contract's status cannot tell, so
        # one repeat of an upload is allowed per flow: it must replace the documents with
        # the same ones (the sandbox's 204) or be refused as already there (409).
        references = {sig.client_reference for sig in signatures.values()}
        count = count_duplicates(sandbox, Counter(dict.fromkeys(signatures, 1)), references)
        uploads: defaultdict[str, list[int]] = defaultdict(list)
        for record in sandbox.request_log:
            if record.route == "upload_documents" and reached_logic(record):
                uploads[str(record.signature_id)].append(record.status)

    resumed = [run.value("resumed") for run in runs]
    started = [run.value("started") for run in runs]
    done = Counter(flow_id for run in runs for flow_id in run.done())
    by_reference: defaultdict[str, list[str]] = defaultdict(list)
    for sid, sig in signatures.items():
        by_reference[sig.client_reference].append(sid)
    orphans = sorted(
        sid
        for flow_id, (_, state) in states.items()
        for sid in by_reference[state.client_reference]
        if sid != state.generation.signature_id
    )
    summary = (
        f"flows {FLOWS}, kills {len(kills)} (done in run, delay s, signed at kill: {kills}), "
        f"resumed per restart {resumed[1:]}, started per run {started}, "
        f"orphan workflows {len(orphans)}, "
        f"temp files left by kills {len(list((tmp_path / 'signed').glob('*/.*')))}"
    )
    print(summary)  # the figures of the run, shown with pytest -s

    # The first run started every flow; every restart found flows cut short to resume.
    assert (started[0], resumed[0]) == (FLOWS, 0), summary
    assert all(count > 0 for count in resumed[1:]), summary
    assert all(signed < FLOWS for _, _, signed in kills), summary
    # No flow was reported done twice (a kill between its last save and its line can leave
    # it unreported; the stored state below is the proof that it ended).
    assert max(done.values()) == 1, summary
    # A kill mid-download leaves a hidden temp file; the resumed flow removed every one.
    assert list((tmp_path / "signed").glob("*/.qes-*.part")) == [], summary

    problems = []
    for flow_id, (finished, state) in sorted(states.items()):
        gen = state.generation
        sid = gen.signature_id
        assert sid is not None
        mine = [signatures[s].status for s in by_reference[state.client_reference]]
        checks = {
            "finished": finished and state.outcome == "signed" and gen.ended == "signed",
            "one generation": len(state.generations) == 1 and gen.in_flight is None,
            "one signed workflow": mine.count("signed") == 1 and signatures[sid].status == "signed",
            "one approval": processed[("approve_documents", sid)] == 1,
            "one confirmation": processed[("confirm_signature", sid)] == 1
            and signatures[sid].wrong_passcodes == 0,
            "one creation": processed[("create_workflow", sid)] == 1,
            "documents": _documents_ok(tmp_path / "signed" / flow_id, state),
        }
        problems += [f"{flow_id}: {name}" for name, ok in checks.items() if not ok]
    for sid in orphans:
        if touched[sid] or signatures[sid].status not in ("new", "pending"):
            problems.append(f"orphan {sid} was used after its creation ({touched[sid]} calls)")
    assert problems == [], f"{summary}; {len(problems)} problem(s): {problems[:10]}"
    # Nothing but the orphans of a kill during a create reached the service twice, and
    # every such orphan was reported by its resumed flow (unconfirmed_creates).
    others = {route: n for route, n in count.by_route.items() if route != "create_workflow"}
    assert others == {}, (summary, count.details[:10])
    assert count.by_route["create_workflow"] == len(orphans), (summary, count.details[:10])
    reported = sum(g.unconfirmed_creates for _, state in states.values() for g in state.generations)
    assert reported >= len(orphans), summary
    repeats = {sid: codes for sid, codes in uploads.items() if len(codes) > 1}
    assert all(len(codes) == 2 and codes[1] in (204, 409) for codes in repeats.values()), (
        summary,
        repeats,
    )
    assert all(len(signatures[sid].documents) == 1 for sid in repeats), summary
    # Every workflow the service holds belongs to one of the flows (none lost track of).
    assert len(signatures) == FLOWS + len(orphans), summary


def _documents_ok(folder: Path, state: FlowState) -> bool:
    """The signed PDFs and the contract on disk, whole, hashed as stored, and valid."""
    records = [*state.downloads, *([state.contract] if state.contract else [])]
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if visible != sorted(Path(r.path).name for r in records) or len(state.downloads) != 1:
        return False
    for record in records:
        data = Path(record.path).read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256 or len(data) != record.size:
            return False
        if not data.rstrip().endswith(b"%%EOF"):
            return False
    return all(record.validation == "valid" for record in state.downloads)
