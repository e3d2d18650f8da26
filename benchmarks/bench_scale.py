"""3. Flow scale: many concurrent one-document flows, all completing.

* with the sandbox in a process of its own (``_sandbox_child``, real clock), so the flows
  have the event loop to themselves as in production: the SDK's flows per second against
  the same flows driven by plain aiohttp (``_raw_ceremony``: the same requests and bodies,
  webhooks to a bare handler, none of the SDK's checks, checkpoints or retries), in
  interleaved rounds, median of each side, with the event-loop CPU per flow of both
  (``time.thread_time`` of the loop's thread: the SDK's executor hops are not counted,
  the loop's work to hand them over is);
* for reference, flows per second with the in-process sandbox (fake clock, webhooks), and
  the same flows driven by plain aiohttp against a fresh sandbox in the same process
  (both share the loop with the sandbox, so that mostly measures the sandbox);
* peak memory per waiting flow: flows parked in their waiters (the sandbox holds their
  eligibility check for 10 s of fake time), measured with tracemalloc; allocations made by
  the sandbox's code or inside aiohttp's server (the sandbox's and the receiver's
  connections) are excluded. A separate, smaller run, since tracing slows everything.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from statistics import median

from qes_async import FlowOutcome, FlowResult, WebhookDispatcher

from ._common import Row, child_json, helper_process
from ._raw_ceremony import run_flows
from ._remote import measure
from ._world import Nudges, World, nudged, world

FLOWS = 10_000  # the figure; see FULL_FLOWS
# fits the time budget since the fixes of the first run (see README); QES_BENCH_FLOWS
# runs fewer (or more), e.g. for a --profile run, which is slower
FULL_FLOWS = int(os.environ.get("QES_BENCH_FLOWS", FLOWS))
MEMORY_FLOWS = 1_000
# the sandbox in its own process; QES_BENCH_APART_FLOWS sizes it (0 skips it)
APART_FLOWS = int(os.environ.get("QES_BENCH_APART_FLOWS", 1_000))
APART_ROUNDS = 3
# many waiting flows in a fresh process: QES_BENCH_MANY=1 adds the row (or =N for N flows);
# 100,000 take tens of minutes, so make bench leaves it out
_MANY = int(os.environ.get("QES_BENCH_MANY", "0") or 0)
MANY_FLOWS = _MANY if _MANY > 1 else 100_000
PROCESSING = 10.0  # fake seconds the sandbox takes to decide eligibility


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


async def _throughput(folder: Path, flows: int) -> tuple[float, float, Nudges]:
    """Flows/s and achieved req/s, in-process sandbox, and how often the fake clock had to
    be moved on for a lost webhook (see :func:`~._world.nudged`).

    Every flow uploads the same PDF for the same person, so the sandbox signs it once and
    the flows validate it once: what is measured is the HTTP and the flow machinery.
    """
    async with world(folder, webhooks=True) as w:
        w.sandbox.add_client("client")
        first = await w.flow("client").run()  # warm up: token, connections, signing keys
        assert first.signature_id is not None
        before = len(w.sandbox.request_log)
        started = time.perf_counter()
        async with nudged(w) as nudges:
            results = await asyncio.gather(*(w.flow("client").run() for _ in range(flows)))
        elapsed = time.perf_counter() - started
        assert all(r.outcome is FlowOutcome.SIGNED for r in results)
        requests = len(w.sandbox.request_log) - before
        return flows / elapsed, requests / elapsed, nudges


def _client_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Traced bytes not allocated by the sandbox's own code (the service is not ours)."""
    mine = snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*/qes_async/sandbox/*", all_frames=True),
            tracemalloc.Filter(False, "*/aiohttp/web_*", all_frames=True),  # servers' own
        ]
    )
    return sum(stat.size for stat in mine.statistics("filename"))


async def _memory(folder: Path, flows: int) -> tuple[float, float]:
    """Bytes per flow parked in its waiter, sandbox allocations excluded: for a first
    batch of ``flows`` (which also pays for the client's connection pool and caches
    filling up) and for a second batch parked beside it (what one more flow costs)."""
    async with world(folder, webhooks=True, processing_delay=PROCESSING) as w:
        w.sandbox.add_client("client")
        dispatcher = w.dispatcher
        assert dispatcher is not None
        await _finish(w, [asyncio.ensure_future(w.flow("client").run())])  # warm up
        gc.collect()
        tracemalloc.start(8)
        sizes = [_client_bytes(tracemalloc.take_snapshot())]
        tasks: list[asyncio.Future[FlowResult]] = []
        for batch in (1, 2):
            tasks += [asyncio.ensure_future(w.flow("client").run()) for _ in range(flows)]
            await _until(lambda n=batch * flows: dispatcher.subscriber_count == n)
            # Subscribed is not parked yet: each waiter reads the status first, then again
            # after each webhook. Counted only once every waiter sleeps on its mailbox.
            await _until(lambda n=batch * flows: _parked(dispatcher) == n)
            await _quiet(w)  # the last webhook deliveries and status reads are answered
            gc.collect()
            sizes.append(_client_bytes(tracemalloc.take_snapshot()))
        tracemalloc.stop()
        await _finish(w, tasks)  # release them all; they must still complete
        return (sizes[1] - sizes[0]) / flows, (sizes[2] - sizes[1]) / flows


def _parked(dispatcher: WebhookDispatcher) -> int:
    """How many mailboxes have their waiter asleep on them (no status read under way)."""
    count = 0
    for mailboxes in dispatcher._subscribers.values():
        for mailbox in mailboxes if isinstance(mailboxes, list) else (mailboxes,):
            future = mailbox._future
            count += future is not None and not future.done()
    return count


async def _quiet(w: World, calm: float = 0.5) -> None:
    """Until no request has reached the sandbox for ``calm`` seconds (at least 0.5 s in
    all): on a loaded machine the last status reads of the parked flows can take longer
    than a fixed pause, and their connections are not what a waiting flow holds."""
    seen, since = -1, time.monotonic()
    while True:
        await asyncio.sleep(0.1)
        now = len(w.sandbox.request_log)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= calm:
            return


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


def _apart(folder: Path, flows: int, rounds: int) -> list[Row]:
    with helper_process("benchmarks._sandbox_child") as (_, line):
        got = asyncio.run(measure(json.loads(line), folder, flows, rounds))
    sdk, plain = median(got["sdk"]), median(got["plain"])
    pairs = [s / p for s, p in zip(got["sdk"], got["plain"], strict=True)]
    cpu_sdk, cpu_plain = median(got["sdk_cpu"]) * 1000, median(got["plain_cpu"]) * 1000
    return [
        Row(
            "3 ceremony apart: SDK vs plain aiohttp",
            sdk / plain,
            0.95,
            True,
            note=f"{sdk:.0f} vs {plain:.0f} flows/s, {flows} concurrent flows, sandbox in "
            f"its own process, median of {rounds} interleaved rounds "
            f"(spread {min(pairs):.2f}x-{max(pairs):.2f}x)",
        ),
        Row(
            "3 ceremony apart: loop CPU/flow over plain",
            cpu_sdk - cpu_plain,
            1.0,
            False,
            unit=" ms",
            note=f"{cpu_sdk:.2f} vs {cpu_plain:.2f} ms of event-loop CPU per flow",
        ),
    ]


#: Which parts run (default all): QES_BENCH_SCALE_PARTS=inproc profiles the SDK's
#: in-process flows alone, for instance.
PARTS = ("apart", "inproc", "memory", "many")


def _parts() -> set[str]:
    raw = os.environ.get("QES_BENCH_SCALE_PARTS", "")
    chosen = {p.strip() for p in raw.split(",") if p.strip()} or set(PARTS) - {"many"}
    if os.environ.get("QES_BENCH_MANY"):
        chosen.add("many")
    return chosen


def run(quick: bool) -> list[Row]:
    flows = 50 if quick else FULL_FLOWS
    memory_flows = 50 if quick else MEMORY_FLOWS
    apart, rounds = (30, 1) if quick else (APART_FLOWS, APART_ROUNDS)
    parts = _parts()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "apart" in parts and apart:
            rows += _apart(Path(tmp) / "apart", apart, rounds)
            gc.collect()
        if "inproc" in parts:
            rows += _inproc(Path(tmp), flows)
            gc.collect()
        if "memory" in parts:
            per_flow, more = asyncio.run(_memory(Path(tmp) / "memory", memory_flows))
            rows.append(
                Row(
                    "3 scale: memory per waiting flow",
                    per_flow / 1024,
                    8,
                    False,
                    unit=" KB",
                    note=f"{memory_flows} flows parked in their waiters (tracemalloc); "
                    f"{more / 1024:.1f} KB each for {memory_flows} more parked beside them "
                    "(the first also fill the connection pool and caches)",
                )
            )
        if "many" in parts:
            rows.append(_many(Path(tmp) / "many", 200 if quick else MANY_FLOWS))
    return rows


def _many(folder: Path, flows: int) -> Row:
    """The many-waiting-flows row, from a fresh process (so its peak RSS is its own)."""
    folder.mkdir(parents=True)
    got = child_json("benchmarks._many_child", str(flows), str(folder), timeout=7200)
    mb = 1024 * 1024
    per_flow = (got["parked"] - got["before"]) / flows / 1024
    return Row(
        "3 many waiting flows: peak RSS",
        got["peak"] / mb,
        0.0,
        False,
        unit=" MB",
        note=f"{flows} flows parked on consent in {got['parked_s']:.0f} s, then all signed, "
        f"consents given in waves (at most {got['ramp']:,} on their way at once) in "
        f"{got['release_s']:.0f} s ({got['total_s']:.0f} s in all); "
        f"RSS {got['before'] / mb:.0f} MB before, "
        f"{got['parked'] / mb:.0f} MB parked ({per_flow:.1f} KB a flow, sandbox included); "
        f"fake clock moved on {got['nudges']} times for lost webhooks",
        informative=True,
    )


def _inproc(folder: Path, flows: int) -> list[Row]:
    per_s, achieved, nudges = asyncio.run(_throughput(folder / "scale", flows))
    gc.collect()
    plain = asyncio.run(_plain_ceremony(folder / "plain", flows))
    return [
        Row(
            "3 scale: flows/s, in-process sandbox",
            per_s,
            0.0,
            True,
            unit="/s",
            note=f"{flows} concurrent flows, all signed; {nudges.failed_deliveries} webhook "
            f"deliveries failed under the load, fake clock moved on {nudges.times} times",
            informative=True,
        ),
        Row(
            "3 scale: in-process, vs plain aiohttp",
            achieved / plain,
            0.0,
            True,
            note=f"{achieved:.0f} vs {plain:.0f} req/s (the sandbox shares the loop)",
            informative=True,
        ),
    ]
