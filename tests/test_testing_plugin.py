"""The pytest fixtures the package offers to users, used the way a user would.

This module names no plugin: the fixtures come from the package's ``pytest11`` entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import qes_async.testing
from qes_async import (
    CallbackSigner,
    Document,
    FlowOutcome,
    QESClient,
    SignatureFlow,
    Status,
    make_pdf,
)
from qes_async.sandbox import SandboxServer


async def test_client_fixture_talks_to_the_sandbox_fixture(
    qes_client: QESClient, qes_sandbox: SandboxServer
) -> None:
    workflow = await qes_client.create_workflow("client-1")
    report = await qes_client.get_signature_status(workflow.signature_id)
    assert report.status is Status.PENDING
    routes = [r.route for r in qes_sandbox.request_log]
    assert routes == ["create_token", "create_workflow", "get_signature_status"]


async def test_a_whole_flow_with_the_fixtures(
    qes_client: QESClient, qes_signer: CallbackSigner, tmp_path: object
) -> None:
    flow = SignatureFlow(
        qes_client,
        documents=[Document.from_bytes("a.pdf", make_pdf("A"))],
        mobile_number="+31612345678",
        client_reference="client-2",
        signer=qes_signer,
        download_dir=str(tmp_path),
    )
    result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.documents) == 1


def test_the_fixtures_register_through_a_pytest11_entry_point(
    pytestconfig: pytest.Config,
) -> None:
    [point] = [p for p in entry_points(group="pytest11") if p.value == "qes_async.testing"]
    # named as the module, so a leftover pytest_plugins = ["qes_async.testing"] is a no-op
    assert point.name == "qes_async.testing"
    assert pytestconfig.pluginmanager.get_plugin("qes_async.testing") is qes_async.testing


_STRICT_TEST = """
import pytest


@pytest.mark.asyncio
async def test_signs(qes_client, qes_sandbox, qes_clock):
    workflow = await qes_client.create_workflow("client-1")
    qes_clock.advance(60)
    assert [r.route for r in qes_sandbox.request_log][-1] == "create_workflow"
    assert workflow.signature_id
"""


def _fresh_project(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``folder`` with no settings of ours: pytest-asyncio in strict mode."""
    (folder / "pytest.ini").write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"),
            *("-c", str(folder / "pytest.ini"), "--rootdir", str(folder), *options, str(folder)),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_fixtures_work_in_strict_mode_without_a_conftest(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(_STRICT_TEST, encoding="utf-8")
    done = _fresh_project(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mode=Mode.STRICT" in done.stdout
    assert "1 passed" in done.stdout


def test_a_conftest_that_still_names_the_plugin_does_not_register_it_twice(
    tmp_path: Path,
) -> None:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["qes_async.testing"]\n', encoding="utf-8"
    )
    (tmp_path / "test_app.py").write_text(_STRICT_TEST, encoding="utf-8")
    done = _fresh_project(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_fixtures_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(_STRICT_TEST, encoding="utf-8")
    done = _fresh_project(tmp_path, "-p", "no:qes_async.testing")
    assert done.returncode != 0
    assert "fixture 'qes_client' not found" in done.stdout


def test_loading_the_plugin_imports_neither_the_sandbox_nor_the_client() -> None:
    """Every pytest run of a project with the package installed loads the plugin."""
    code = (
        "import sys, qes_async.testing\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('qes_async.sandbox', 'qes_async._client.client', 'aiohttp', 'pyhanko'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_without_pytest_asyncio_the_run_goes_on_and_the_fixtures_say_what_to_install(
    tmp_path: Path,
) -> None:
    # as if it were not installed: a pytest_asyncio ahead on the path that cannot import
    blocked = tmp_path / "blocked" / "pytest_asyncio"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pytest_asyncio'\")\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(tmp_path / "blocked")
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_app.py").write_text(
        "def test_unrelated():\n"
        "    assert True\n\n\n"
        "def test_wants_the_sandbox(qes_sandbox):\n"
        "    pass\n",
        encoding="utf-8",
    )
    (project / "pytest.ini").write_text("", encoding="utf-8")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:asyncio", "-p", "no:cacheprovider"),
            *("-c", str(project / "pytest.ini"), "--rootdir", str(project), str(project)),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert "1 error" in done.stdout, done.stdout + done.stderr
    assert "need pytest-asyncio: pip install pytest-asyncio" in done.stdout
