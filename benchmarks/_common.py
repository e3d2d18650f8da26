"""What every benchmark shares: the result row, timers and helper subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, its target, and whether it is met.

    ``higher_is_better`` says which side of ``target`` is OK; ``note`` says what was measured.
    """

    name: str
    figure: float
    target: float
    higher_is_better: bool
    unit: str = "x"
    note: str = ""
    informative: bool = False  # printed for reference, no target

    @property
    def ok(self) -> bool:
        if self.higher_is_better:
            return self.figure >= self.target
        return self.figure <= self.target

    def target_text(self) -> str:
        if self.informative:
            return "(reference)"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {_num(self.target)}{self.unit}"

    def verdict(self) -> str:
        if self.informative:
            return "-"
        return "OK" if self.ok else "MISS"

    def figure_text(self) -> str:
        return f"{_num(self.figure)}{self.unit}"


def _num(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    """The one table: name, figure, target, OK/MISS, note."""
    head = ("benchmark", "figure", "target", "result", "measured")
    lines = [head] + [(r.name, r.figure_text(), r.target_text(), r.verdict(), r.note) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    out = []
    for i, line in enumerate(lines):
        cells = [line[c].ljust(widths[c]) for c in range(4)]
        out.append("  ".join(cells) + "  " + line[4])
        if i == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return "\n".join(out)


async def rate(count: int, call: Callable[[], Awaitable[object]], in_flight: int) -> float:
    """Calls per second: ``count`` calls of ``call`` with ``in_flight`` running at once."""
    import asyncio

    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count / (time.perf_counter() - started)


def quiet_logs() -> None:
    """pyHanko logs every untrusted sandbox signature it validates: not news here."""
    import logging

    for name in ("pyhanko", "pyhanko_certvalidator", "qes_async"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def python_env() -> dict[str, str]:
    """The environment for helper processes: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("QES_ASYNC_LOG", None)
    return env


def child_json(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``python -m module args...`` in a fresh interpreter and return the JSON object
    on the last line of its output (a failed child raises with the end of its stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=python_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


@contextlib.contextmanager
def helper_process(module: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python -m module args``; yield it and the first line it prints (its URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"{module} did not start")
        yield proc, line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
