"""``import qes_async`` stays light: no sandbox, pyHanko, CLI or OpenTelemetry until asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# OpenTelemetry loads only once qes_async.otel.instrument() is called.
FORBIDDEN = (
    "qes_async.sandbox",
    "pyhanko",
    "qes_async._cli",
    "opentelemetry",
    "qes_async._runtime.otel",
)


def loaded_after(statement: str) -> list[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    modules: list[str] = json.loads(out)
    return modules


@pytest.mark.parametrize(
    "statement",
    [
        "import qes_async",
        "from qes_async import QESClient, SignatureFlow, HybridWaiter",
        "import qes_async.otel, qes_async.webhooks",
    ],
)
def test_import_loads_no_sandbox_pyhanko_or_cli(statement: str) -> None:
    modules = loaded_after(statement)
    bad = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_the_client_loads_cattrs_only_when_it_first_structures_an_answer() -> None:
    # The status call, the most frequent one, never needs cattrs: its body is built
    # directly. cattrs and the converter load on the first other answer (the client
    # tests parse every kind of answer through it).
    modules = loaded_after("from qes_async import QESClient")
    assert "cattrs" not in modules
    assert "qes_async._core.converter" not in modules


def test_the_client_loads_backoff_and_queue_only_when_needed() -> None:
    # backoff computes the waits between retries, queue feeds the writer of a large
    # download: neither is needed to import the client (nor by aiohttp itself).
    modules = loaded_after("from qes_async import QESClient")
    assert "backoff" not in modules
    assert "queue" not in modules
    # Nor by the waiters: their delays come from backoff when a waiter is built.
    assert "backoff" not in loaded_after("from qes_async import HybridWaiter, PollingWaiter")


def test_the_client_loads_the_download_writer_and_email_utils_only_when_needed() -> None:
    # The streaming writer of signed documents (and its multipart reader) loads with the
    # first download, email.utils with the first Retry-After given as an HTTP date.
    modules = loaded_after("from qes_async import QESClient")
    assert "qes_async._client.download" not in modules
    assert "qes_async._client.multipart" not in modules
    assert "email.utils" not in modules


@pytest.mark.parametrize(
    "statement",
    [
        "from qes_async._flow.pades import pyhanko_available; assert pyhanko_available()",
        "from qes_async.sandbox._signing import sandbox_ca, sign_pdf; sandbox_ca()",
    ],
)
def test_loading_pyhanko_gives_apps_no_warning(statement: str) -> None:
    # recent cryptography (51) warns (a UserWarning, shown by default) as pyHanko imports
    # DSA; with warnings as errors, a load that let it through would fail here.
    pytest.importorskip("pyhanko")
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", statement],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr
