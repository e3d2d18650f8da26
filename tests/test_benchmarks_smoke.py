"""``python -m benchmarks --quick`` still runs and prints every row with a number.

Never a timing or OK/MISS assertion: the machine's load decides those, not the code.
"""

from __future__ import annotations

import json
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


def _bench(*args: str, timeout: float) -> str:
    """``python -m ARGS`` from the checkout; its output, once it exited cleanly."""
    done = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_quick_benchmarks_print_every_row_with_a_number() -> None:
    stdout = _bench("benchmarks", "--quick", timeout=600)
    for name in ROWS:
        line = next((ln for ln in stdout.splitlines() if ln.startswith(name)), None)
        assert line is not None, f"no row {name!r} in:\n{stdout}"
        assert re.search(r"\s\d+(\.\d+)?\s?[a-zA-Z/]*\s", line[len(name) :]), line


def test_the_ceremony_profile_counts_calls_per_flow_for_both_sides() -> None:
    stdout = _bench("benchmarks._ceremony_profile", "4", timeout=300)
    for side in ("sdk", "plain"):
        head = next((ln for ln in stdout.splitlines() if ln.startswith(f"{side}: ")), "")
        assert re.search(r"[\d.]+ ms of loop CPU a flow", head), stdout
    counts = re.findall(r"^\s+([\d,]+) calls a flow", stdout, flags=re.MULTILINE)
    assert len(counts) == 2, stdout
    assert all(int(c.replace(",", "")) > 0 for c in counts)


def test_the_ceremony_bound_strips_what_it_says_and_prints_each_part() -> None:
    stdout = _bench("benchmarks._ceremony_bound", "3", "1", timeout=300)
    # 15 of each in a one-document ceremony: 0 would mean a patch missed its method
    skipped = re.search(r"skipped ([\d.]+) evidence entries and ([\d.]+) checkpoints", stdout)
    assert skipped is not None, stdout
    assert float(skipped[1]) > 5, stdout
    assert float(skipped[2]) > 5, stdout
    for side in ("sdk", "sdk, no evidence", "sdk, no evidence, no checkpoints", "plain"):
        assert re.search(rf"^  {re.escape(side)}\s+[\d.]+ ms", stdout, flags=re.MULTILINE), stdout
    for part in ("evidence entries", "checkpoints", "the rest of the SDK"):
        assert re.search(rf"^  {part}\s+[-+][\d.]+ ms", stdout, flags=re.MULTILINE), stdout


def test_the_many_flows_child_parks_and_signs_every_flow(tmp_path: Path) -> None:
    stdout = _bench("benchmarks._many_child", "30", str(tmp_path), timeout=300)
    got = json.loads(stdout.strip().splitlines()[-1])
    assert (got["flows"], got["signed"], got["failed"]) == (30, 30, {})
    assert 0 < got["before"] <= got["peak"]
    assert got["parked"] <= got["peak"]


def test_a_failed_benchmark_child_raises_with_the_end_of_its_stderr() -> None:
    # (a child that succeeds is every --quick run of rows 3 many, 4 and 7 above)
    import pytest

    from benchmarks._common import child_json

    with pytest.raises(RuntimeError, match=r"(?s)_no_such_child exited with 1:.*No module named"):
        child_json("benchmarks._no_such_child", timeout=60)
