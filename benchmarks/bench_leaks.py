"""7. Leaks: 10,000 sequential flows on one long-lived client, in-process sandbox, fake clock.

The process's current RSS (``/proc/self/statm``) is read after a warm-up and then every
tenth of the run, after a garbage collection. Two figures:

* the RSS growth over the whole measured run, in MB;
* the growth over the second half of the flows against the growth over the first half
  (its floor 1 MB, so that noise around zero does not make the ratio): the heap and the
  allocator's arenas settle during the first thousands of flows, and without a leak the
  second half adds (almost) nothing, so the ratio stays near 0x; a leak grows with every
  flow, and the second half then adds as much as the first, near 1x (target <= 0.5x).

The flows run in a fresh interpreter of their own (``python -m benchmarks.bench_leaks
FLOWS WARM_UP``): after the other benchmarks, the parent's heap holds hundreds of MB that
were freed but not given back, which the flows would reuse first, so a leak could grow
the heap for thousands of flows without the RSS moving.

The sandbox is the service, not the client, and keeps every signature, request and SMS
for the tests to read; the benchmark removes a flow's records from it once the flow ends,
and the flow's download folder too, so only the client side can grow.

Negative control (not part of ``make bench``): ``QES_BENCH_LEAK=results`` keeps every
``FlowResult`` in a list, ``QES_BENCH_LEAK=flows`` keeps every finished ``SignatureFlow``,
and ``QES_BENCH_LEAK=caches`` turns the release of the client's per-signature caches off
(as before it existed); each should make both figures rise.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qes_async import FlowOutcome

from ._common import Row, child_json
from ._world import World, world

FLOWS = 10_000
QUICK_FLOWS = 300
WARM_UP = 200  # flows before the baseline reading: token, connections, pools, caches
QUICK_WARM_UP = 30
STEPS = 10  # RSS readings over the measured run
LEAK_ENV = "QES_BENCH_LEAK"
_FLOOR_MB = 1.0

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """The current resident set size in MB; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE / 2**20
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KB


def _settled_rss() -> float:
    gc.collect()
    return rss_mb()


def _trim_sandbox(w: World, signature_ids: list[str]) -> None:
    """Forget the service's records of finished signatures (the service is not ours)."""
    sandbox = w.sandbox
    for sig in signature_ids:
        sandbox.service.signatures.pop(sig, None)
    sandbox.request_log.clear()
    sandbox.service.sms_outbox.clear()
    sandbox.webhooks.deliveries.clear()


async def _one(w: World, planted: list[Any], leak: str) -> None:
    flow = w.flow("client")
    if leak == "caches":
        flow._forget = lambda: None  # type: ignore[method-assign]
    result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    _trim_sandbox(w, [g.signature_id for g in result.generations if g.signature_id])
    shutil.rmtree(w.folder / result.flow_id, ignore_errors=True)
    if leak == "results":
        planted.append(result)
    elif leak == "flows":
        planted.append(flow)


async def _run(folder: Path, flows: int, warm_up: int, leak: str) -> tuple[list[float], float]:
    """RSS readings (the baseline first, then one per step) and the measured seconds."""
    planted: list[Any] = []
    async with world(folder, webhooks=False) as w:
        w.sandbox.add_client("client")
        for _ in range(warm_up):
            await _one(w, planted, leak if leak == "caches" else "")
        readings = [_settled_rss()]
        step = flows // STEPS
        started = time.perf_counter()
        for n in range(1, flows + 1):
            await _one(w, planted, leak)
            if n % step == 0:
                readings.append(_settled_rss())
        elapsed = time.perf_counter() - started
    return readings, elapsed


def run(quick: bool) -> list[Row]:
    flows = QUICK_FLOWS if quick else FLOWS
    warm_up = QUICK_WARM_UP if quick else WARM_UP
    leak = os.environ.get(LEAK_ENV, "")
    if leak not in ("", "results", "flows", "caches"):
        raise SystemExit(f"{LEAK_ENV} must be results, flows or caches, not {leak!r}")
    readings, elapsed = _in_child(flows, warm_up)
    base, middle, last = readings[0], readings[len(readings) // 2], readings[-1]
    growth = last - base
    early = middle - base
    late = last - middle
    planted = f"; planted leak: {leak}" if leak else ""
    return [
        Row(
            "7 leaks: RSS growth, sequential flows",
            growth,
            20.0,
            False,
            unit=" MB",
            note=(
                f"{flows} flows on one client in {elapsed:.0f} s ({flows / elapsed:.0f}/s), "
                f"RSS {base:.0f} -> {last:.0f} MB after {warm_up} warm-up flows{planted}"
            ),
        ),
        Row(
            "7 leaks: late vs early growth",
            late / max(early, _FLOOR_MB),
            0.5,
            False,
            note=(
                f"second half of the flows {late:+.1f} MB vs first half {early:+.1f} MB "
                f"(floor {_FLOOR_MB:.0f} MB); per tenth: "
                + " ".join(f"{b - a:+.1f}" for a, b in itertools.pairwise(readings))
            ),
        ),
    ]


def _in_child(flows: int, warm_up: int) -> tuple[list[float], float]:
    """The RSS readings and seconds of a run in a fresh interpreter (its leak planted from
    the same environment variable)."""
    got = child_json("benchmarks.bench_leaks", str(flows), str(warm_up), timeout=3600)
    return [float(r) for r in got["readings"]], float(got["elapsed"])


if __name__ == "__main__":
    from ._common import quiet_logs

    quiet_logs()
    with tempfile.TemporaryDirectory() as tmp:
        readings, elapsed = asyncio.run(
            _run(Path(tmp), int(sys.argv[1]), int(sys.argv[2]), os.environ.get(LEAK_ENV, ""))
        )
    print(json.dumps({"readings": readings, "elapsed": elapsed}))
