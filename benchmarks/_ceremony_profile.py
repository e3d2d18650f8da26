"""Benchmark 3 (apart) measured from inside: Python calls and event-loop CPU per flow.

``python -m benchmarks._ceremony_profile [FLOWS]`` starts the sandbox in its own process
(``_sandbox_child``), as benchmark 3's apart rows do, runs FLOWS concurrent flows of each
side (the SDK's, then the plain-aiohttp driver's) under cProfile on the loop thread's CPU
clock (``time.thread_time``), after an unprofiled warm-up of 50 flows a side (FLOWS, if
fewer), and prints
per flow: the calls made (Python functions and C built-ins), grouped by package, and the
profiled own time by package. It also counts the garbage collector's runs and their CPU
per flow, in an unprofiled round of the same size.

Calls per flow do not depend on the machine's load, so they are the figure to compare
between two versions of the code; the profiled times are inflated by cProfile (more for
Python code than for C) and only their shares mean something.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from ._common import helper_process
from ._profile import package_of
from ._remote import RemoteSandbox, plain_flows, sdk_flows

Side = Callable[[RemoteSandbox, Path, int], Awaitable[tuple[float, float]]]
SIDES: dict[str, Side] = {"sdk": sdk_flows, "plain": plain_flows}


class _GcClock:
    """Counts the collector's runs and the loop thread's CPU inside them."""

    def __init__(self) -> None:
        self.young = self.full = 0
        self.young_s = self.full_s = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.thread_time()
            return
        spent = time.thread_time() - self._began
        if info["generation"] == 2:
            self.full, self.full_s = self.full + 1, self.full_s + spent
        else:
            self.young, self.young_s = self.young + 1, self.young_s + spent


def _by_package(stats: pstats.Stats) -> tuple[dict[str, int], dict[str, float]]:
    calls: dict[str, int] = defaultdict(int)
    own: dict[str, float] = defaultdict(float)
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        package = package_of(filename, function)
        calls[package] += row[1]
        own[package] += row[2]
    return calls, own


async def _side(remote: RemoteSandbox, folder: Path, name: str, flows: int) -> str:
    run = SIDES[name]
    await run(remote, folder / "warm-up", min(50, flows))
    clock = _GcClock()
    gc.callbacks.append(clock)
    try:
        per_s, cpu = await run(remote, folder / "gc", flows)
    finally:
        gc.callbacks.remove(clock)
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        await run(remote, folder / "profiled", flows)
    finally:
        profile.disable()
    calls, own = _by_package(pstats.Stats(profile))
    all_calls, all_own = sum(calls.values()), sum(own.values()) or 1.0
    lines = [
        f"{name}: {flows} flows, {per_s:.0f} flows/s and {cpu * 1000:.2f} ms of loop CPU a "
        f"flow unprofiled; collector: {clock.young / flows:.2f} young runs "
        f"({clock.young_s / flows * 1000:.2f} ms) and {clock.full} full "
        f"({clock.full_s / flows * 1000:.2f} ms) a flow",
        f"  {all_calls / flows:,.0f} calls a flow; {'package':<22} {'calls':>8} {'own':>7}",
    ]
    for package, count in sorted(calls.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"  {package:<44} {count / flows:8,.0f} {own[package] / all_own:7.1%}")
    return "\n".join(lines)


async def _main(info: dict[str, str], folder: Path, flows: int) -> None:
    async with aiohttp.ClientSession() as session:
        remote = RemoteSandbox(info, session)
        for name in SIDES:
            where = folder / name
            where.mkdir()
            for part in ("warm-up", "gc", "profiled"):
                (where / part).mkdir()
            print(await _side(remote, where, name, flows), flush=True)


def main() -> None:
    flows = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with (
        tempfile.TemporaryDirectory() as folder,
        helper_process("benchmarks._sandbox_child") as (_, line),
    ):
        asyncio.run(_main(json.loads(line), Path(folder), flows))


if __name__ == "__main__":
    main()
