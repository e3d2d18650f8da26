"""A signing worker for tests/test_crash_resume.py: runs as its own process, to be killed.

It signs ``--flows`` jobs (flow ``flow-NNNN``, client reference ``client-NNNN``, document
``{docs}/doc-NNNN.pdf``) through the service at ``--url``, checkpointing every step to the
SQLite store ``--db``. On start it first resumes every unfinished flow the store holds
(``SignatureFlow.resume``), then starts the jobs the store does not know yet; a finished
flow is left alone. Passcodes come from the sandbox's control endpoint
``GET {url}/_sandbox/sms/{signature_id}/latest``.

A SIGKILLed run leaves its flows' leases held until they run out (``--lease-ttl``); the
next run waits them out rather than driving a flow another worker may still hold.

It prints one line per event, flushed, for the test to follow: ``ready``, ``resumed N``,
``started N``, ``done FLOW OUTCOME`` and ``finished`` (exit 0). A flow that ends in an
error prints ``failed FLOW ERROR`` and the worker exits 1 at the end. The client
credentials come from ``QES_CLIENT_ID`` and ``QES_CLIENT_SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from qes_async import (
    CallbackSigner,
    Document,
    FlowNotFoundError,
    PasscodeRequest,
    PollingWaiter,
    QESClient,
    QESError,
    SignatureFlow,
    SQLiteFlowStore,
    StaleStateError,
)

MOBILE = "+31612345678"


def job_ids(count: int) -> list[str]:
    """The flow ids of ``count`` jobs, in order."""
    return [f"flow-{number:04d}" for number in range(count)]


def reference(flow_id: str) -> str:
    """The client reference of a job (one per flow, so workflows count per flow)."""
    return flow_id.replace("flow-", "client-")


def say(line: str) -> None:
    print(line, flush=True)


class Worker:
    """Runs every job to its end, resuming the unfinished ones first."""

    def __init__(self, args: argparse.Namespace, client: QESClient, store: SQLiteFlowStore):
        self.args = args
        self.client = client
        self.store = store
        self.session = aiohttp.ClientSession()
        self.slots = asyncio.Semaphore(args.concurrency)
        self.failed = 0
        self.signer = CallbackSigner(consent=lambda request: True, passcode=self.passcode)
        self.options: dict[str, Any] = {
            "store": store,
            "signer": self.signer,
            "waiter": PollingWaiter(client, initial_interval=0.05, max_interval=0.5),
            "download_dir": args.out,
            "trust_roots": [args.ca.read_bytes()],
            "lease_ttl": args.lease_ttl,
            "outcome_grace": 5.0,
        }

    async def passcode(self, request: PasscodeRequest) -> str:
        url = f"{self.args.url}/_sandbox/sms/{request.signature_id}/latest"
        async with self.session.get(url) as response:
            response.raise_for_status()
            body = await response.json()
        return str(body["passcode"])

    async def run(self) -> None:
        unfinished = set(await self.store.unfinished(limit=100_000))
        fresh = []
        for flow_id in job_ids(self.args.flows):
            if flow_id in unfinished:
                continue
            try:
                await self.store.load(flow_id)
            except FlowNotFoundError:
                fresh.append(flow_id)
        say(f"resumed {len(unfinished)}")
        say(f"started {len(fresh)}")
        say("ready")
        work = [self.guarded(flow_id, resume=True) for flow_id in sorted(unfinished)]
        work += [self.guarded(flow_id, resume=False) for flow_id in fresh]
        await asyncio.gather(*work)

    async def guarded(self, flow_id: str, *, resume: bool) -> None:
        async with self.slots:
            try:
                outcome = await self.drive(flow_id, resume=resume)
            except QESError as exc:
                self.failed += 1
                say(f"failed {flow_id} {type(exc).__name__}")
                return
        say(f"done {flow_id} {outcome}")

    async def drive(self, flow_id: str, *, resume: bool) -> str:
        if not resume:
            path = self.args.docs / f"doc-{flow_id.removeprefix('flow-')}.pdf"
            flow = SignatureFlow(
                self.client,
                flow_id=flow_id,
                documents=[Document.from_path(path)],
                mobile_number=MOBILE,
                client_reference=reference(flow_id),
                **self.options,
            )
            return (await flow.run()).outcome.value
        while True:  # a killed worker's lease holds until it runs out
            flow = await SignatureFlow.resume(flow_id, client=self.client, **self.options)
            try:
                return (await flow.run()).outcome.value
            except StaleStateError:
                await asyncio.sleep(0.2)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ca", type=Path, required=True, help="the sandbox CA (PEM)")
    parser.add_argument("--flows", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    async with (
        QESClient(
            os.environ["QES_CLIENT_ID"], os.environ["QES_CLIENT_SECRET"], base_url=args.url
        ) as client,
        SQLiteFlowStore(args.db) as store,
    ):
        worker = Worker(args, client, store)
        try:
            await worker.run()
        finally:
            await worker.session.close()
    say("finished")
    return 1 if worker.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
