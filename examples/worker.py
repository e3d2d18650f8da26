"""An asyncio worker: signing jobs from a queue, checkpoints in SQLite, resumed after a restart.

Each job's id is also its flow id, so a job delivered twice is signed once. Every step of
every flow is checkpointed to a :class:`~qes_async.SQLiteFlowStore`; when the worker starts,
it first resumes the flows a previous run left unfinished (``SignatureFlow.resume``), which
re-reads the service's status instead of repeating an approval or a confirmation.

Run it:

* ``python examples/worker.py --sandbox --jobs 3``: an embedded sandbox, three demo jobs,
  passcodes read from the sandbox's SMS outbox;
* ``python examples/worker.py --db worker.db jobs.jsonl`` against a real environment
  (``QES_CLIENT_ID``, ``QES_CLIENT_SECRET``, ``QES_BASE_URL`` or ``QES_ENVIRONMENT``); each
  line of ``jobs.jsonl`` is ``{"job_id", "client_reference", "mobile_number", "document"}``
  and the signer answers on this terminal. Stop it (Ctrl-C) and start it again: it carries
  on where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qes_async import (
    CallbackSigner,
    Document,
    FlowNotFoundError,
    FlowResult,
    PasscodeRequest,
    QESClient,
    QESError,
    SignatureFlow,
    Signer,
    SQLiteFlowStore,
    TerminalSigner,
    make_pdf,
)
from qes_async.sandbox import SandboxServer, sandbox_ca

log = logging.getLogger("qes_async.examples.worker")


@dataclass(frozen=True)
class Job:
    """One signing job. ``job_id`` doubles as the flow id."""

    job_id: str
    client_reference: str
    mobile_number: str = field(repr=False)
    document: Path

    @classmethod
    def from_json(cls, line: str) -> Job:
        """A job from one line of a jobs file."""
        data = json.loads(line)
        return cls(
            str(data["job_id"]),
            str(data["client_reference"]),
            str(data["mobile_number"]),
            Path(data["document"]),
        )


class Worker:
    """Runs signing jobs concurrently; resumes unfinished flows first.

    Args:
        client: the QESClient all flows share.
        store: where checkpoints go (a SQLiteFlowStore survives restarts).
        signer: answers consent and passcode questions for every flow.
        download_dir: where signed PDFs are written (one folder per flow).
        concurrency: how many flows run at once.
        flow_options: more keyword arguments for every SignatureFlow (waiter, trust_roots...).
    """

    def __init__(
        self,
        client: QESClient,
        store: SQLiteFlowStore,
        signer: Signer,
        *,
        download_dir: Path,
        concurrency: int = 4,
        **flow_options: Any,
    ) -> None:
        self.client = client
        self.store = store
        self.signer = signer
        self.download_dir = download_dir
        self.flow_options = flow_options
        self.results: dict[str, FlowResult] = {}
        self.failures: dict[str, str] = {}
        self.skipped: list[str] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._active: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, jobs: asyncio.Queue[Job | None]) -> None:
        """Resume unfinished flows, then take jobs until ``None`` arrives; wait for all.

        Cancelling it cancels every running flow; each keeps its last checkpoint and frees
        its lease, so the next run resumes it at once.
        """
        try:
            for flow_id in await self.store.unfinished(limit=10_000):
                self._spawn(flow_id, self._resume(flow_id))
            while (job := await jobs.get()) is not None:
                self._spawn(job.job_id, self._take(job))
            while self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, flow_id: str, work: Coroutine[Any, Any, None]) -> None:
        if flow_id in self._active:  # already running (resumed, and sent again)
            work.close()
            self.skipped.append(flow_id)
            return
        self._active.add(flow_id)
        task = asyncio.ensure_future(self._guarded(flow_id, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, flow_id: str, work: Coroutine[Any, Any, None]) -> None:
        async with self._slots:
            try:
                await work
            except QESError as exc:  # one job's failure never stops the worker
                self.failures[flow_id] = type(exc).__name__
                log.warning("flow %s failed: %s", flow_id, exc)
            finally:
                self._active.discard(flow_id)

    async def _take(self, job: Job) -> None:
        try:
            stored = await self.store.load(job.job_id)
        except FlowNotFoundError:
            flow = SignatureFlow(
                self.client,
                flow_id=job.job_id,
                documents=[Document.from_path(job.document)],
                mobile_number=job.mobile_number,
                client_reference=job.client_reference,
                **self._options(),
            )
            await self._finish(flow)
            return
        if stored.finished:
            log.info("job %s was done already", job.job_id)
            self.skipped.append(job.job_id)
            return
        await self._resume(job.job_id)

    async def _resume(self, flow_id: str) -> None:
        log.info("resuming flow %s", flow_id)
        flow = await SignatureFlow.resume(flow_id, client=self.client, **self._options())
        await self._finish(flow)

    async def _finish(self, flow: SignatureFlow) -> None:
        result = await flow.run()
        self.results[flow.flow_id] = result
        log.info("flow %s ended: %s", flow.flow_id, result.outcome.value)

    def _options(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "signer": self.signer,
            "download_dir": self.download_dir,
            **self.flow_options,
        }


# ---------------------------------------------------------------------------- command line


async def feed(jobs: list[Job]) -> asyncio.Queue[Job | None]:
    """A queue holding ``jobs`` and the end marker."""
    queue: asyncio.Queue[Job | None] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    queue.put_nowait(None)
    return queue


def demo_jobs(count: int, folder: Path) -> list[Job]:
    """``count`` jobs with generated PDFs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for number in range(1, count + 1):
        path = folder / f"contract-{number}.pdf"
        path.write_bytes(make_pdf(f"Contract {number}"))
        jobs.append(Job(f"job-{number}", f"client-{number}", "+31612345678", path))
    return jobs


@contextlib.asynccontextmanager
async def sandbox_client() -> AsyncIterator[tuple[QESClient, Signer]]:
    """An embedded sandbox, a client for it, and a signer reading its SMS outbox."""
    async with (
        SandboxServer() as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
    ):

        def passcode(request: PasscodeRequest) -> str:
            return sandbox.latest_passcode(request.signature_id)

        yield client, CallbackSigner(consent=lambda request: True, passcode=passcode)


@contextlib.asynccontextmanager
async def environment_client() -> AsyncIterator[tuple[QESClient, Signer]]:
    """A client configured from QES_* variables, and a signer on this terminal."""
    base_url = os.environ.get("QES_BASE_URL")
    async with QESClient(
        os.environ.get("QES_CLIENT_ID", ""),
        os.environ.get("QES_CLIENT_SECRET", ""),
        base_url=base_url,
        environment=None if base_url else os.environ.get("QES_ENVIRONMENT"),
    ) as client:
        yield client, TerminalSigner()


async def main(argv: list[str] | None = None) -> int:
    """Run the worker from the command line; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs_file", nargs="?", type=Path, help="JSON lines, one job each")
    parser.add_argument("--sandbox", action="store_true", help="use an embedded sandbox")
    parser.add_argument("--jobs", type=int, default=3, help="demo jobs with --sandbox")
    parser.add_argument("--db", type=Path, help="the SQLite checkpoint file")
    parser.add_argument("--out", type=Path, default=Path("signed"), help="signed PDFs go here")
    args = parser.parse_args(argv)
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops as Ctrl-C does; flows resume on the next run
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    # The sandbox signs with its own test CA; with a real service, give its qualified roots.
    options: dict[str, Any] = (
        {"trust_roots": [sandbox_ca().certificate_pem]} if args.sandbox else {}
    )
    with tempfile.TemporaryDirectory() as scratch:
        if args.jobs_file is not None:
            lines = args.jobs_file.read_text().splitlines()
            jobs = [Job.from_json(line) for line in lines if line.strip()]
        else:
            jobs = demo_jobs(args.jobs if args.sandbox else 0, Path(scratch))
        # A sandbox's signatures die with it, so its checkpoints are scratch by default.
        db = args.db or (Path(scratch) / "worker.db" if args.sandbox else Path("worker.db"))
        connect = sandbox_client() if args.sandbox else environment_client()
        async with connect as (client, signer), SQLiteFlowStore(db) as store:
            worker = Worker(client, store, signer, download_dir=args.out, **options)
            await worker.run(await feed(jobs))
    for flow_id, result in sorted(worker.results.items()):
        print(f"{flow_id}: {result.outcome.value} (signature {result.signature_id})")
    for flow_id, error in sorted(worker.failures.items()):
        print(f"{flow_id}: failed ({error})")
    return 1 if worker.failures else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(asyncio.run(main()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped; run again to resume the unfinished flows", file=sys.stderr)
        sys.exit(130)
