"""3. Flow scale: many concurrent one-document flows against the in-process sandbox, with the
fake clock and webhooks, all completing.

* flows per second, and the ratio of the requests per second the flows achieved to the
  sandbox's raw request rate (plain aiohttp reading statuses, 64 in flight) measured in the
  same run and process, the issue's figure;
* the same flows driven by plain aiohttp (``_raw_ceremony``: the same requests and bodies,
  webhooks to a bare handler, none of the SDK's checks, checkpoints or retries), against a
  fresh sandbox in the same process: the SDK's request rate against that one is what its
  machinery costs on top of the HTTP a ceremony must do;
* peak memory per waiting flow: flows parked in their waiters (the sandbox holds their
  eligibility check for 10 s of fake time), measured with tracemalloc; allocations made by
  the sandbox's code or inside aiohttp's server (the sandbox's and the receiver's
  connections) are excluded. A separate, smaller run, since tracing slows everything.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp

from qes_async import FlowOutcome, FlowResult

from ._common import Row, rate
from ._raw_ceremony import run_flows
from ._world import World, world

FLOWS = 10_000  # the figure; see FULL_FLOWS
FULL_FLOWS = FLOWS  # fits the time budget since the fixes of the first run (see README)
MEMORY_FLOWS = 1_000
PROCESSING = 10.0  # fake seconds the sandbox takes to decide eligibility


async def _raw_rate(w: World, signature_id: str, count: int) -> float:
    """The sandbox's raw rate: plain aiohttp reading one status, 64 in flight."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{w.sandbox.url}/v1/oauth2/token",
            json={
                "grant_type": "client_credentials",
                "client_id": w.sandbox.client_id,
                "client_secret": w.sandbox.client_secret,
            },
        ) as resp:
            token = (await resp.json())["access_token"]
        url = f"{w.sandbox.url}/v1/signatures/{signature_id}/status"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        async def read() -> object:
            async with session.get(url, headers=headers) as r:
                r.raise_for_status()
                return await r.json()

        await rate(256, read, 64)
        return await rate(count, read, 64)


async def _plain_ceremony(folder: Path, flows: int) -> float:
    """Requests per second of the same flows driven by plain aiohttp, fresh sandbox."""
    async with world(folder, webhooks=False) as w:
        w.sandbox.add_client("client")
        assert await run_flows(w.sandbox, folder / "warm-up", 1) == 1
        before = len(w.sandbox.request_log)
        started = time.perf_counter()
        assert await run_flows(w.sandbox, folder / "flows", flows) == flows
        elapsed = time.perf_counter() - started
        return (len(w.sandbox.request_log) - before) / elapsed


async def _throughput(folder: Path, flows: int) -> tuple[float, float, float]:
    """Flows/s, achieved req/s, raw sandbox req/s.

    Every flow uploads the same PDF for the same person, so the sandbox signs it once and
    the flows validate it once: what is measured is the HTTP and the flow machinery.
    """
    async with world(folder, webhooks=True) as w:
        w.sandbox.add_client("client")
        first = await w.flow("client").run()  # warm up: token, connections, signing keys
        assert first.signature_id is not None
        raw = await _raw_rate(w, first.signature_id, max(500, flows * 2))
        before = len(w.sandbox.request_log)
        started = time.perf_counter()
        results = await asyncio.gather(*(w.flow("client").run() for _ in range(flows)))
        elapsed = time.perf_counter() - started
        assert all(r.outcome is FlowOutcome.SIGNED for r in results)
        requests = len(w.sandbox.request_log) - before
        return flows / elapsed, requests / elapsed, raw


def _client_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Traced bytes not allocated by the sandbox's own code (the service is not ours)."""
    mine = snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*/qes_async/sandbox/*", all_frames=True),
            tracemalloc.Filter(False, "*/aiohttp/web_*", all_frames=True),  # servers' own
        ]
    )
    return sum(stat.size for stat in mine.statistics("filename"))


async def _memory(folder: Path, flows: int) -> float:
    """Bytes per flow parked in its waiter, sandbox allocations excluded."""
    async with world(folder, webhooks=True, processing_delay=PROCESSING) as w:
        w.sandbox.add_client("client")
        assert w.dispatcher is not None
        await _finish(w, [asyncio.ensure_future(w.flow("client").run())])  # warm up
        gc.collect()
        tracemalloc.start(8)
        base = _client_bytes(tracemalloc.take_snapshot())
        tasks = [asyncio.ensure_future(w.flow("client").run()) for _ in range(flows)]
        await _until(lambda: w.dispatcher is not None and w.dispatcher.subscriber_count == flows)
        await asyncio.sleep(0.5)  # let the last webhook deliveries and answers settle
        gc.collect()
        waiting = _client_bytes(tracemalloc.take_snapshot())
        tracemalloc.stop()
        await _finish(w, tasks)  # release them all; they must still complete
        return (waiting - base) / flows


async def _finish(w: World, tasks: list[asyncio.Future[FlowResult]]) -> None:
    """Move the fake clock past each processing delay until every flow is signed."""
    while not all(t.done() for t in tasks):
        await asyncio.sleep(0.02)
        w.clock.advance(PROCESSING)
    assert all(t.result().outcome is FlowOutcome.SIGNED for t in tasks)


async def _until(condition: object, limit: float = 600.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the flows did not reach the waiting point")
        await asyncio.sleep(0.01)


def run(quick: bool) -> list[Row]:
    flows = 50 if quick else FULL_FLOWS
    memory_flows = 50 if quick else MEMORY_FLOWS
    with tempfile.TemporaryDirectory() as tmp:
        per_s, achieved, raw = asyncio.run(_throughput(Path(tmp) / "scale", flows))
        gc.collect()
        plain = asyncio.run(_plain_ceremony(Path(tmp) / "plain", flows))
        per_flow = asyncio.run(_memory(Path(tmp) / "memory", memory_flows))
    return [
        Row(
            "3 scale: flows/s",
            per_s,
            0.0,
            True,
            unit="/s",
            note=f"{flows} concurrent flows, all signed",
            informative=True,
        ),
        Row(
            "3 scale: req/s vs raw sandbox",
            achieved / raw,
            0.6,
            True,
            note=f"{achieved:.0f} vs raw {raw:.0f} req/s",
        ),
        Row(
            "3 scale: req/s vs plain aiohttp flows",
            achieved / plain,
            0.6,
            True,
            note=f"{achieved:.0f} vs {plain:.0f} req/s; plain vs raw {plain / raw:.2f}x",
        ),
        Row(
            "3 scale: memory per waiting flow",
            per_flow / 1024,
            16,
            False,
            unit=" KB",
            note=f"{memory_flows} flows parked in their waiters (tracemalloc)",
        ),
    ]
