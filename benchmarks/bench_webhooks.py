"""5. Webhook receiver: events per server CPU-second through Basic authentication, parsing and
dispatch, against a bare aiohttp handler that reads the body and answers 200, both under the
same load generator.

Each server runs alone in its own process; the load generator (this process, 64 requests in
flight, the same signed JSON bodies) alternates between them in rounds. The target row is
events per CPU-second of the server process (user + system, from ``/proc``), the median of
the rounds' ratios with their spread (7 rounds of 4,000 events a side):
on 2 cores the generator competes with the server for CPU, so wall-clock rates measure the
generator as much as the server. The wall-clock ratio (each side's best round) is printed
for reference.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from statistics import median

import aiohttp

from ._common import Row, helper_process, rate
from ._webhook_server import PASSWORD, PREFIX, USER

#: Interleaved rounds of each server; the row is the median of the rounds' CPU ratios.
ROUNDS = 7

IDS = [f"sig-{n:05d}" for n in range(1000)]
STATUSES = ("pending", "documents_approved", "signed")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    urls: dict[str, str], pids: dict[str, int], count: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Best events/s per server, and each round's events per server CPU-second."""
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    bodies = [
        json.dumps({"signatureId": sid, "status": STATUSES[n % 3], "statusCode": 3200}).encode()
        for n, sid in enumerate(IDS)
    ]
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        calls = {}
        for kind, url in urls.items():
            counter = iter(range(10**9))

            async def post(url: str = url, counter: object = counter) -> None:
                n = next(counter)  # type: ignore[call-overload]
                target = f"{url}{PREFIX}/{IDS[n % len(IDS)]}"
                async with session.post(target, data=bodies[n % len(IDS)], headers=headers) as r:
                    if r.status >= 300:
                        raise AssertionError(f"{url} answered {r.status}")
                    await r.read()

            calls[kind] = post
        for call in calls.values():
            await rate(256, call, 64)  # warm up
        best = dict.fromkeys(calls, 0.0)
        per_cpu: dict[str, list[float]] = {kind: [] for kind in calls}
        for _ in range(rounds):
            for kind, call in calls.items():
                before = cpu_seconds(pids[kind])
                best[kind] = max(best[kind], await rate(count, call, 64))
                used = cpu_seconds(pids[kind]) - before
                per_cpu[kind].append(count / max(used, 1e-3))
        return best, per_cpu


def run(quick: bool) -> list[Row]:
    with (
        helper_process("benchmarks._webhook_server", "receiver") as (rproc, receiver),
        helper_process("benchmarks._webhook_server", "bare") as (bproc, bare),
    ):
        best, per_cpu = asyncio.run(
            _measure(
                {"receiver": receiver, "bare": bare},
                {"receiver": rproc.pid, "bare": bproc.pid},
                200 if quick else 4000,
                1 if quick else ROUNDS,
            )
        )
    pairs = [r / b for r, b in zip(per_cpu["receiver"], per_cpu["bare"], strict=True)]
    return [
        Row(
            "5 receiver vs bare, per server CPU-s",
            median(pairs),
            0.9,
            True,
            note=f"{median(per_cpu['receiver']):.0f} vs {median(per_cpu['bare']):.0f} events "
            f"per CPU-second, median of {len(pairs)} interleaved rounds' ratios "
            f"(spread {min(pairs):.2f}x-{max(pairs):.2f}x)",
        ),
        Row(
            "5 webhook receiver vs bare, wall clock",
            best["receiver"] / best["bare"],
            0.0,
            True,
            note=f"{best['receiver']:.0f} vs {best['bare']:.0f} events/s, 64 in flight",
            informative=True,
        ),
    ]
