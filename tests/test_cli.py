"""The ``qes-async`` command: demo scenarios, exit codes, JSON, and the commands that take
their configuration from the environment (run against a standalone sandbox process)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qes_async._cli import EXIT_CODES, main


@pytest.mark.parametrize(
    "scenario", ["happy", "selfie", "wrong-passcode", "expiry", "pending-verification"]
)
def test_demo_scenario_ends_signed_with_a_valid_pdf(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--scenario", scenario, "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "finished: signed" in out
    assert "signed by Jane Doe: signature valid" in out
    pdfs = sorted(tmp_path.rglob("loan-contract.pdf"))
    assert len(pdfs) == 1
    assert pdfs[0].read_bytes().startswith(b"%PDF-")


def test_demo_expiry_shows_the_restart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--scenario", "expiry", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "restarted as generation 2" in out
    assert "after 2 workflow(s)" in out


def test_demo_kyc_refuses_clearly_with_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--scenario", "kyc", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 4
    assert "kyc_required" in EXIT_CODES[4]
    assert "refused: kyc_required (status codes 1201)" in out
    assert "identity verification" in out
    assert not list(tmp_path.rglob("*.pdf"))


@pytest.mark.parametrize("scenario", ["happy", "pending-verification"])
def test_demo_over_webhooks_ends_signed(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--webhooks", "--scenario", scenario, "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "waiting with: webhooks plus safety polling" in out


def test_demo_json_is_one_machine_readable_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--json", "--output", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "signed"
    assert data["scenario"] == "happy"
    signed = [f for f in data["files"] if f["path"].endswith("loan-contract.pdf")]
    assert signed[0]["validation"] == "valid"
    assert len(signed[0]["sha256"]) == 64


def test_missing_configuration_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("QES_CLIENT_ID", "QES_CLIENT_SECRET", "QES_BASE_URL", "QES_ENVIRONMENT"):
        monkeypatch.delenv(var, raising=False)
    assert main(["status", "sig-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "QES_CLIENT_ID" in err


@pytest.fixture
def standalone_sandbox() -> Iterator[dict[str, str]]:
    """``qes-async sandbox`` in its own process; yields the environment to reach it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qes_async._cli",
            "sandbox",
            "--fake-clock",
            "--client-id",
            "cli-test",
            "--client-secret",
            "cli-test-secret",
            "--serve-for",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        banner = []
        for line in proc.stdout:  # the banner ends with "Press Ctrl+C to stop."
            banner.append(line)
            if line.startswith("Press Ctrl+C") or len(banner) > 50:
                break
        url = banner[0].rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), banner
        # the environment is the one the banner tells users to export, copied as printed
        [export] = [line for line in banner if line.strip().startswith("export QES_BASE_URL=")]
        env = dict(word.split("=", 1) for word in shlex.split(export)[1:])
        assert env == {
            "QES_BASE_URL": url,
            "QES_CLIENT_ID": "cli-test",
            "QES_CLIENT_SECRET": "cli-test-secret",
        }
        yield env
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "qes_async._cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_of_an_unknown_signature_is_a_clear_refusal(
    standalone_sandbox: dict[str, str],
) -> None:
    done = _cli(standalone_sandbox, "status", "no-such-signature")
    assert done.returncode == 5
    assert "HTTP 404" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_base_url_wins_over_an_environment_name(standalone_sandbox: dict[str, str]) -> None:
    both = {**standalone_sandbox, "QES_ENVIRONMENT": "production"}
    done = _cli(both, "status", "no-such-signature")
    assert done.returncode == 5, done.stderr  # the sandbox's 404, not a configuration error
    assert "HTTP 404" in done.stderr


def test_status_and_download_against_a_running_sandbox(
    standalone_sandbox: dict[str, str], tmp_path: Path
) -> None:
    import asyncio

    from qes_async import Document, QESClient, make_pdf

    async def signed_signature() -> tuple[str, str]:
        import aiohttp

        env = standalone_sandbox
        async with QESClient(
            env["QES_CLIENT_ID"], env["QES_CLIENT_SECRET"], base_url=env["QES_BASE_URL"]
        ) as client:
            workflow = await client.create_workflow("cli-client")
            sid = workflow.signature_id
            await client.upload_documents(sid, [Document.from_bytes("c.pdf", make_pdf("C"))])
            await client.upload_mobile_number(sid, "+31612345678")
            details = await client.get_signature_details(sid)
            await client.approve_documents(sid, details)
            async with aiohttp.ClientSession() as http:
                latest = f"{env['QES_BASE_URL']}/_sandbox/sms/{sid}/latest"
                passcode = (await (await http.get(latest)).json())["passcode"]
            await client.confirm_signature(sid, passcode)
            return sid, details.documents[0].document_id

    sid, document_id = asyncio.run(signed_signature())
    status = _cli(standalone_sandbox, "status", sid, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "signed"
    download = _cli(standalone_sandbox, "download", sid, document_id, "-o", str(tmp_path))
    assert download.returncode == 0, download.stderr
    saved = list(tmp_path.glob("*.pdf"))
    assert len(saved) == 1
    assert saved[0].read_bytes().startswith(b"%PDF-")


def test_sign_and_resume_commands_drive_a_flow_at_the_terminal(
    standalone_sandbox: dict[str, str], tmp_path: Path
) -> None:
    """``qes-async sign`` as a person uses it: consent typed at the prompt, then the passcode
    from the SMS (read here from the sandbox's control endpoint)."""
    import os
    import time
    import urllib.request

    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qes_async._cli",
            "sign",
            "--document",
            str(pdf),
            "--mobile",
            "+31612345678",
            "--client-reference",
            "cli-signer",
            "--output",
            str(tmp_path / "out"),
            "--store",
            str(tmp_path / "flows.db"),
        ],
        env={**os.environ, **standalone_sandbox},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no controlling terminal: prompts read from stdin
    )
    assert proc.stdin is not None
    proc.stdin.write("maybe\nyes\n")  # an unclear answer is asked again
    proc.stdin.flush()
    sms_url = f"{standalone_sandbox['QES_BASE_URL']}/_sandbox/sms"
    deadline = time.monotonic() + 30
    outbox: list[dict[str, str]] = []
    while not outbox and time.monotonic() < deadline:
        time.sleep(0.05)
        with urllib.request.urlopen(sms_url) as answer:  # loopback control endpoint
            outbox = json.loads(answer.read())
    assert outbox, "no passcode was sent"
    out, err = proc.communicate(outbox[-1]["passcode"] + "\n", timeout=60)
    assert proc.returncode == 0, err
    assert "Please answer yes or no." in out
    assert "loan.pdf" in out
    assert ": signed" in out
    assert outbox[-1]["passcode"] not in out + err
    signed = list((tmp_path / "out").rglob("loan.pdf"))
    assert len(signed) == 1
    assert signed[0].read_bytes().startswith(b"%PDF-")
    flow_id = out.split("flow ", 1)[1].split(" ", 1)[0]
    again = _cli(
        standalone_sandbox,
        "resume",
        flow_id,
        "--store",
        str(tmp_path / "flows.db"),
        "--output",
        str(tmp_path / "out"),
        "--document",
        str(pdf),
    )
    assert again.returncode == 0, again.stderr
    assert f"flow {flow_id}: signed" in again.stdout


def test_commands_other_than_sandbox_do_not_load_the_sandbox() -> None:
    code = (
        "import sys, qes_async._cli as cli; cli.build_parser(['status', 'sig-1']); "
        "print('qes_async.sandbox' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def test_resuming_a_flow_that_ended_in_kyc_required_exits_4_again(
    standalone_sandbox: dict[str, str], tmp_path: Path
) -> None:
    import urllib.request

    from qes_async import make_pdf

    register = urllib.request.Request(
        f"{standalone_sandbox['QES_BASE_URL']}/_sandbox/clients",
        data=json.dumps({"clientReference": "cli-kyc", "kycFailAt": "mobile"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(register) as answer:  # loopback control endpoint
        assert answer.status == 200
    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    store = ["--store", str(tmp_path / "flows.db"), "--output", str(tmp_path / "out")]
    sign = _cli(
        standalone_sandbox,
        "sign",
        "--document",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "cli-kyc",
        *store,
        "--json",
    )
    assert sign.returncode == 4, sign.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "flows.db") as db:
        (flow_id,) = db.execute("SELECT flow_id FROM qes_flows").fetchone()
    again = _cli(standalone_sandbox, "resume", flow_id, *store, "--document", str(pdf))
    assert again.returncode == 4, (again.stdout, again.stderr)  # not 3, "declined"
    assert "kyc_required" in again.stdout
