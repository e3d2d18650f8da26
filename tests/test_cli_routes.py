"""The route commands of ``qes-async``: ``routes``, ``doctor``, ``--routes``/``QES_ROUTES``,
and ``sandbox --routes`` / ``--string-status-codes``, each in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qes_async import Routes

MOVED = (
    "# the layout of another deployment\n"
    'upload_mobile_number = "/v1/qualifiedElectronicSignature/{id}/mobile-number"\n'
    'get_signature_status = "/v1/qualifiedElectronicSignature/{id}/status"\n'
    'confirm_signature = "/v1/signatures/{id}/confirm"\n'
)
ID, SECRET = "cli-doctor", "cli-doctor-secret"
COMMAND = (
    sys.executable,
    "-m",
    "qes_async._cli.main",
    "sandbox",
    "--fake-clock",
    "--serve-for",
    "60",
)

Sandbox = Callable[..., dict[str, str]]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QES_")}
    return subprocess.run(
        [sys.executable, "-m", "qes_async._cli.main", *args],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,  # a signer prompt must see end of input, not wait
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Start ``qes-async sandbox`` with extra options; gives the environment to reach it."""
    procs: list[subprocess.Popen[str]] = []

    def start(*options: str) -> dict[str, str]:
        proc = subprocess.Popen(
            [*COMMAND, "--client-id", ID, "--client-secret", SECRET, *options],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), first
        return {"QES_CLIENT_ID": ID, "QES_CLIENT_SECRET": SECRET, "QES_BASE_URL": url}

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def moved(tmp_path: Path) -> Path:
    path = tmp_path / "moved.toml"
    path.write_text(MOVED, encoding="utf-8")
    return path


def test_routes_prints_the_defaults_as_a_file_that_reads_back(tmp_path: Path) -> None:
    done = _cli({}, "routes")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "routes.toml"
    path.write_text(done.stdout, encoding="utf-8")
    assert Routes.from_file(path) == Routes()


def test_routes_prints_the_merged_table_of_qes_routes_in_its_format(
    tmp_path: Path, moved: Path
) -> None:
    done = _cli({"QES_ROUTES": str(moved)}, "routes", "--format", "json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert table == {name: getattr(Routes.from_file(moved), name) for name in Routes.operations()}
    as_toml = _cli({"QES_ROUTES": str(moved)}, "routes")
    assert 'confirm_signature = "/v1/signatures/{id}/confirm"' in as_toml.stdout
    assert 'create_workflow = "/v1/workflows"' in as_toml.stdout


def test_a_bad_routes_file_is_refused_listing_the_valid_operations(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('get_status = "/v1/s/{id}"\n', encoding="utf-8")
    done = _cli({}, "routes", "--routes", str(path))
    assert done.returncode == 7
    assert "unknown operation(s) get_status" in done.stderr
    assert "get_signature_status" in done.stderr
    assert done.stderr.count("\n") == 1


def test_doctor_against_a_moved_sandbox_names_the_moved_routes(
    sandbox: Sandbox, moved: Path
) -> None:
    env = sandbox("--routes", str(moved))
    done = _cli(env, "doctor")
    assert done.returncode == 5, done.stdout + done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    for override in MOVED.splitlines()[1:]:
        assert override in lines
    wrong = [line.split()[0] for line in lines if line.endswith(" wrong")]
    assert sorted(wrong) == ["confirm_signature", "get_signature_status", "upload_mobile_number"]
    assert "8/11 routes ok" in done.stdout


def test_doctor_with_the_routes_file_passes_and_json_says_so(sandbox: Sandbox, moved: Path) -> None:
    env = sandbox("--routes", str(moved))
    done = _cli({**env, "QES_ROUTES": str(moved)}, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "11/11 routes ok: every route looks right." in done.stdout
    as_json = _cli(env, "doctor", "--json", "--routes", str(moved))
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert data["ok"] is True
    assert {r["verdict"] for r in data["routes"]} == {"ok"}
    assert SECRET not in as_json.stdout


def test_status_works_on_the_moved_sandbox_with_only_qes_routes(
    sandbox: Sandbox, moved: Path
) -> None:
    env = sandbox("--routes", str(moved), "--string-status-codes")
    without = _cli(env, "status", "no-such-signature")
    assert "no such path" in without.stderr  # the default path is not served there
    with_routes = _cli({**env, "QES_ROUTES": str(moved)}, "status", "no-such-signature")
    assert with_routes.returncode == 5
    assert "signature_not_found" in with_routes.stderr or "no signature" in with_routes.stderr


def test_sandbox_options_configure_the_layout_codes_and_workflow_names(moved: Path) -> None:
    import argparse

    from qes_async.sandbox._standalone import add_arguments, build_server

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--routes", str(moved), "--string-status-codes", "--workflow-name", "QES"]
    )
    server = build_server(args)
    assert server.routes == Routes.from_file(moved)
    assert server.service.string_status_codes is True
    assert server.service.workflow_names == ("QES",)
    default = build_server(parser.parse_args([]))
    assert (default.routes, default.service.string_status_codes) == (Routes(), False)
    assert default.service.workflow_names == ("qes",)


def _creates(env: dict[str, str]) -> list[int]:
    import urllib.request

    with urllib.request.urlopen(env["QES_BASE_URL"] + "/_sandbox/requests", timeout=10) as r:
        log = json.loads(r.read())
    return [entry["status"] for entry in log if entry["route"] == "create_workflow"]


def test_sign_sends_the_workflow_name_given_on_the_command_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    env = sandbox("--workflow-name", "IDVandQES")
    sign = ("sign", "-d", str(pdf), "--mobile", "+31612345678", "--client-reference", "c-1")
    store = ("--store", str(tmp_path / "flows.sqlite3"), "-o", str(tmp_path / "out"))
    store += ("--consent", "yes", "--passcode-from", "-")  # no terminal here
    refused = _cli(env, *sign, *store)  # the default name, qes, is not agreed here
    assert refused.returncode == 5
    assert "workflowName" in refused.stderr
    assert _creates(env) == [400]
    # The name from the environment is sent as is; the flow then waits on the signer,
    # whose terminal here is empty (stdin closed), so only the create is looked at.
    _cli({**env, "QES_WORKFLOW_NAME": "IDVandQES"}, *sign, *store, "--json")
    assert _creates(env) == [400, 201]
    bad = _cli(env, *sign, *store, "--workflow-name", " IDVandQES")
    assert bad.returncode == 7
    assert "workflow_name" in bad.stderr
    assert _creates(env) == [400, 201]  # refused before anything was sent
