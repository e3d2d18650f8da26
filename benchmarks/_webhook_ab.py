"""Benchmark 5's receiver in two versions of the code, side by side: ``python -m
benchmarks._webhook_ab BEFORE AFTER [RUNS]``.

BEFORE and AFTER are two checkouts (each holding ``qes_async`` and ``benchmarks``, e.g. a
``git archive`` of the commit before, unpacked); each serves ``_webhook_server receiver``
from its own process with only its checkout on the path, and ``bench_webhooks._measure``
drives both in alternating rounds. Each run prints AFTER's events per server CPU-second
over BEFORE's, both measured in that run under the same load: on a shared machine, where
the row's receiver-over-bare ratio moves by more than a change of the receiver does, this
ratio tells two versions apart.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .bench_webhooks import _measure


def _start(root: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env.pop("QES_ASYNC_LOG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._webhook_server", "receiver"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def main(argv: list[str]) -> None:
    before, after = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    runs = int(argv[2]) if len(argv) > 2 else 5
    old, old_url = _start(before)
    new, new_url = _start(after)
    ratios = []
    try:
        for _ in range(runs):
            urls = {"before": old_url, "after": new_url}
            pids = {"before": old.pid, "after": new.pid}
            _, per_cpu = asyncio.run(_measure(urls, pids, 4000, 3))
            pairs = [a / b for a, b in zip(per_cpu["after"], per_cpu["before"], strict=True)]
            ratios.append(statistics.median(pairs))
            print(
                f"after/before {ratios[-1]:.3f}x per server CPU-second "
                f"({statistics.median(per_cpu['after']):.0f} vs "
                f"{statistics.median(per_cpu['before']):.0f}, median of {len(pairs)} rounds)",
                flush=True,
            )
    finally:
        old.kill()
        new.kill()
        old.wait()
        new.wait()
    print(f"median {statistics.median(ratios):.3f}x, {min(ratios):.3f}x to {max(ratios):.3f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
