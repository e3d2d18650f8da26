"""Benchmark 3 (apart) taken apart: what the SDK's event-loop CPU per flow is spent on.

``python -m benchmarks._ceremony_bound [FLOWS] [ROUNDS]`` (default 500 flows, 3 rounds)
starts the sandbox in its own process, as benchmark 3's apart rows do, and runs, in
interleaved rounds, FLOWS concurrent flows of each of these sides:

* ``sdk``: the SDK as shipped;
* ``sdk, no evidence``: the same, with the flow's evidence entries not made (its
  ``note`` does nothing);
* ``sdk, no evidence, no checkpoints``: also without checkpoints (its ``_checkpoint``
  only stamps the state's time; nothing is encoded or stored);
* ``plain``: the plain-aiohttp driver of the same requests;
* ``sdk, no collector`` and ``plain, no collector``: the first and the last with the
  garbage collector off while their flows run (what the collector costs each side).

It prints each side's median loop CPU per flow (``time.thread_time`` of the loop's
thread) and flows per second, and what each part costs: the difference between two
sides' medians. The two stripped sides are measurements only: a flow without evidence or
checkpoints breaks the durability the SDK promises, so this tells the next round how
much of the gap to the plain driver those two account for, and how much is the rest
(steps, waiters, retries, validation of the answers, the download's checks).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp

from qes_async import SignatureFlow

from ._common import helper_process
from ._remote import RemoteSandbox, plain_flows, sdk_flows

Side = Callable[[RemoteSandbox, Path, int], Awaitable[tuple[float, float]]]


@contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = obj.__dict__[name]
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


#: How many evidence entries and checkpoints the stripped sides skipped: printed per flow,
#: so a patch that missed (a renamed method) shows as 0 rather than as a faster SDK.
SKIPPED = {"evidence entries": 0, "checkpoints": 0}


def _no_note(self: Any, kind: str, **data: Any) -> None:
    SKIPPED["evidence entries"] += 1


async def _no_checkpoint(self: Any) -> None:
    SKIPPED["checkpoints"] += 1
    self._state.updated_at = self.clock.time()


def _stripped(evidence: bool, checkpoints: bool) -> Side:
    async def run(remote: RemoteSandbox, folder: Path, flows: int) -> tuple[float, float]:
        with (
            _patched(SignatureFlow, "note", SignatureFlow.note if evidence else _no_note),
            _patched(
                SignatureFlow,
                "_checkpoint",
                SignatureFlow._checkpoint if checkpoints else _no_checkpoint,
            ),
        ):
            return await sdk_flows(remote, folder, flows)

    return run


def _no_collector(run: Side) -> Side:
    async def side(remote: RemoteSandbox, folder: Path, flows: int) -> tuple[float, float]:
        gc.collect()
        gc.disable()
        try:
            return await run(remote, folder, flows)
        finally:
            gc.enable()

    return side


SIDES: dict[str, Side] = {
    "sdk": sdk_flows,
    "sdk, no evidence": _stripped(evidence=False, checkpoints=True),
    "sdk, no evidence, no checkpoints": _stripped(evidence=False, checkpoints=False),
    "plain": plain_flows,
    "sdk, no collector": _no_collector(sdk_flows),
    "plain, no collector": _no_collector(plain_flows),
}


async def _main(info: dict[str, str], folder: Path, flows: int, rounds: int) -> None:
    cpu: dict[str, list[float]] = {name: [] for name in SIDES}
    rate: dict[str, list[float]] = {name: [] for name in SIDES}
    async with aiohttp.ClientSession() as session:
        remote = RemoteSandbox(info, session)
        for n in range(rounds):
            for k, (name, run) in enumerate(SIDES.items()):
                where = folder / f"{n}-{k}"
                where.mkdir()
                per_s, per_flow = await run(remote, where, flows)
                rate[name].append(per_s)
                cpu[name].append(per_flow * 1000)
    mid = {name: median(values) for name, values in cpu.items()}
    # the evidence entries are skipped by two sides, the checkpoints by one
    ran = (flows + 1) * rounds  # flows of each side, its warm-up flow each round included
    evidence, checkpoints = SKIPPED["evidence entries"] / 2 / ran, SKIPPED["checkpoints"] / ran
    print(f"{flows} flows a side, {rounds} interleaved rounds; loop CPU per flow (median):")
    print(
        f"  (a stripped flow skipped {evidence:.1f} evidence entries and "
        f"{checkpoints:.1f} checkpoints)"
    )
    for name in SIDES:
        spread = f"{min(cpu[name]):.2f}-{max(cpu[name]):.2f}"
        print(
            f"  {name:<34} {mid[name]:6.2f} ms (rounds {spread})  {median(rate[name]):5.0f} flows/s"
        )
    names = list(SIDES)
    print("what each part costs (difference of medians):")
    for upper, lower, part in (
        (names[0], names[1], "evidence entries"),
        (names[1], names[2], "checkpoints"),
        (names[2], names[3], "the rest of the SDK"),
        (names[0], names[4], "the collector, SDK side"),
        (names[3], names[5], "the collector, plain side"),
    ):
        print(f"  {part:<34} {mid[upper] - mid[lower]:+6.2f} ms")


def main() -> None:
    flows = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with (
        tempfile.TemporaryDirectory() as folder,
        helper_process("benchmarks._sandbox_child") as (_, line),
    ):
        asyncio.run(_main(json.loads(line), Path(folder), flows, rounds))


if __name__ == "__main__":
    main()
