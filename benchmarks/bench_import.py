"""6. Import cost: ``import qes_async`` against ``import aiohttp`` alone, in fresh interpreters.

Also checks that ``import qes_async`` pulls in neither the sandbox, pyHanko nor the CLI.

Both sides load bytecode: the probes run without ``PYTHONDONTWRITEBYTECODE`` and share a
fresh ``PYTHONPYCACHEPREFIX``, filled by one untimed probe of each statement. Otherwise
qes_async (a source checkout) would be compiled in every probe while aiohttp's
site-packages bytecode is ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from ._common import ROOT, Row, python_env

FORBIDDEN = ("qes_async.sandbox", "pyhanko", "qes_async._cli")
# The package alone is lazy (it imports nothing heavy). Importing QESClient no longer
# loads aiohttp (the transport adapter comes with the first client), so the honest
# comparison is the third: a client built, which is what every program does next.
BUILT = "from qes_async import QESClient; QESClient('id', 'secret', base_url='https://qes.test')"
STATEMENTS = ("import aiohttp", "import qes_async", "from qes_async import QESClient", BUILT)

_PROBE = """
import json, sys, time
t = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t
print(json.dumps({{"elapsed": elapsed, "modules": sorted(sys.modules)}}))
"""


def probe_env(pycache: str) -> dict[str, str]:
    """The probes' environment: bytecode read from and written to ``pycache``."""
    env = python_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def probe(statement: str, env: dict[str, str] | None = None) -> tuple[float, list[str]]:
    """Seconds to run an import ``statement`` in a fresh interpreter, and the modules loaded."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        check=True,
        env=env if env is not None else python_env(),
        cwd=ROOT,
    ).stdout
    data = json.loads(out)
    return float(data["elapsed"]), list(data["modules"])


def forbidden_imports(modules: list[str]) -> list[str]:
    """The modules in ``modules`` that ``import qes_async`` must never load."""
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def run(quick: bool) -> list[Row]:
    runs = 3 if quick else 15
    times: dict[str, list[float]] = {s: [] for s in STATEMENTS}
    with tempfile.TemporaryDirectory(prefix="qes-bench-pycache-") as pycache:
        env = probe_env(pycache)
        for statement in STATEMENTS:  # warm-up: every side's bytecode written once
            probe(statement, env)
        for _ in range(runs):  # interleaved, so that noise hits all alike
            for statement in STATEMENTS:
                elapsed, loaded = probe(statement, env)
                times[statement].append(elapsed)
                bad = forbidden_imports(loaded) if "qes_async" in statement else []
                if bad:
                    raise AssertionError(f"{statement!r} loaded {', '.join(bad)}")
    median = {s: sorted(t)[len(t) // 2] for s, t in times.items()}
    base = median["import aiohttp"]
    rows = []
    for statement, label in (
        ("import qes_async", "6 import qes_async vs aiohttp"),
        ("from qes_async import QESClient", "6 import QESClient vs aiohttp"),
        (BUILT, "6 import + build a QESClient vs aiohttp"),
    ):
        rows.append(
            Row(
                label,
                median[statement] / base,
                1.1,
                False,
                note=f"median {median[statement] * 1000:.0f} vs {base * 1000:.0f} ms; "
                "both from bytecode; no sandbox/pyhanko/_cli loaded",
            )
        )
    return rows
