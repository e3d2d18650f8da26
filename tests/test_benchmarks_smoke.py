"""``python -m benchmarks --quick`` still runs and prints every row with a number.

Never a timing or OK/MISS assertion: the machine's load decides those, not the code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    "1 status call, sequential",
    "1 CPU/call over raw, sequential",
    "1 status call, 64 in flight",
    "1 CPU/call over raw, 64 in flight",
    "1 httpx, sequential",
    "1 httpx, 64 in flight",
    "1 OpenTelemetry on, sequential",
    "1 OpenTelemetry on, 64 in flight",
    "2 requests/flow, webhooks",
    "2 requests/flow, polling",
    "3 ceremony apart: SDK vs plain aiohttp",
    "3 ceremony apart: loop CPU/flow over plain",
    "3 scale: flows/s, in-process sandbox",
    "3 scale: in-process, vs plain aiohttp",
    "3 scale: memory per waiting flow",
    "4 streaming: RSS growth",
    "4 download vs raw aiohttp + fsync",
    "4 raw aiohttp + sha256 + fsync (vs raw)",
    "5 receiver vs bare, per server CPU-s",
    "5 webhook receiver vs bare, wall clock",
    "6 import qes_async vs aiohttp",
    "6 import QESClient vs aiohttp",
    "6 import + build a QESClient vs aiohttp",
    "7 leaks: RSS growth, sequential flows",
    "7 leaks: late vs early growth",
)


def test_quick_benchmarks_print_every_row_with_a_number() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ROWS:
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(name)), None)
        assert line is not None, f"no row {name!r} in:\n{done.stdout}"
        assert re.search(r"\s\d+(\.\d+)?\s?[a-zA-Z/]*\s", line[len(name) :]), line


def test_the_ceremony_profile_counts_calls_per_flow_for_both_sides() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._ceremony_profile", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for side in ("sdk", "plain"):
        head = next((ln for ln in done.stdout.splitlines() if ln.startswith(f"{side}: ")), "")
        assert re.search(r"[\d.]+ ms of loop CPU a flow", head), done.stdout
    counts = re.findall(r"^\s+([\d,]+) calls a flow", done.stdout, flags=re.MULTILINE)
    assert len(counts) == 2, done.stdout
    assert all(int(c.replace(",", "")) > 0 for c in counts)
