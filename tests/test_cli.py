"""The ``qes-async`` command: demo scenarios, exit codes, JSON, and the commands that take
their configuration from the environment (run against a standalone sandbox process)."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qes_async._cli.main import EXIT_CODES, main


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
    signed = [f for f in data["documents"] if f["path"].endswith("loan-contract.pdf")]
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
            "qes_async._cli.main",
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


#: The answers a command takes where there is no terminal to ask on.
NO_TERMINAL = ("--consent", "yes", "--passcode-from", "-")


def _latest_passcode(env: dict[str, str]) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{env['QES_BASE_URL']}/_sandbox/sms") as answer:
        outbox = json.loads(answer.read())
    assert outbox, "no passcode was sent"
    return str(outbox[-1]["passcode"])


def _requests(env: dict[str, str]) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{env['QES_BASE_URL']}/_sandbox/requests") as answer:
        return len(json.loads(answer.read()))


class Terminal:
    """A command run in a pseudo-terminal: its standard input and error are the terminal
    (what a person sees and types), its standard output a pipe."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        import os
        import pty

        self.master, self.slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qes_async._cli.main", *args],
            env={**os.environ, **env},
            stdin=self.slave,
            stdout=subprocess.PIPE,
            stderr=self.slave,
            start_new_session=True,
        )
        self.screen = ""

    def _pump(self, wait: float) -> None:
        import os
        import select

        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            with contextlib.suppress(OSError):
                self.screen += os.read(self.master, 65536).decode("utf-8", "replace")

    def expect(self, text: str, timeout: float = 30.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while text not in self.screen and time.monotonic() < deadline:
            self._pump(0.05)
        assert text in self.screen, self.screen

    def send(self, line: str) -> None:
        import os

        os.write(self.master, (line + "\n").encode())

    def finish(self, timeout: float = 60.0) -> tuple[str, int]:
        import time

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.05)
        self._pump(0.1)
        assert self.proc.stdout is not None
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        return self.proc.stdout.read().decode("utf-8", "replace"), code

    def echo_is_on(self) -> bool:
        import termios

        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    def close(self) -> None:
        import os

        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "qes_async._cli.main", *args],
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
    """``qes-async sign`` as a person uses it, in a pseudo-terminal: consent typed at the
    prompt, then the passcode from the SMS (read here from the sandbox's control
    endpoint), typed without echo."""

    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    out_dir, store = str(tmp_path / "out"), str(tmp_path / "flows.db")
    term = Terminal(
        standalone_sandbox,
        "sign",
        "--document",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "cli-signer",
        "--output",
        out_dir,
        "--store",
        store,
    )
    try:
        term.expect("Approve and sign? [yes/no]")
        term.send("maybe")  # an unclear answer is asked again
        term.expect("Please answer yes or no.")
        term.send("yes")
        term.expect("Passcode sent to")
        passcode = _latest_passcode(standalone_sandbox)
        term.send(passcode)
        out, code = term.finish()
        echo = term.echo_is_on()  # turned back on after the passcode
    finally:
        term.close()
    assert code == 0, term.screen
    assert "loan.pdf" in out
    assert ": signed" in out
    assert passcode not in term.screen  # typed with echo off
    assert passcode not in out
    assert echo
    signed = list((tmp_path / "out").rglob("loan.pdf"))
    assert len(signed) == 1
    assert signed[0].read_bytes().startswith(b"%PDF-")
    flow_id = out.split("flow ", 1)[1].split(":", 1)[0]
    again = _cli(
        standalone_sandbox,
        "resume",
        flow_id,
        "--store",
        store,
        "--output",
        out_dir,
        "--document",
        str(pdf),
        *NO_TERMINAL,
    )
    assert again.returncode == 0, again.stderr
    assert f"flow {flow_id}: signed" in again.stdout


@pytest.mark.parametrize("prompt", ["Approve and sign? [yes/no]", "Passcode sent to"])
def test_ctrl_c_at_a_prompt_ends_at_once_with_130_and_the_resume_command(
    standalone_sandbox: dict[str, str], tmp_path: Path, prompt: str
) -> None:
    import signal
    import time

    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    out_dir, store = str(tmp_path / "out"), str(tmp_path / "flows.db")
    term = Terminal(
        standalone_sandbox,
        "sign",
        "--document",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "cli-ctrl-c",
        "--output",
        out_dir,
        "--store",
        store,
    )
    try:
        term.expect("Approve and sign? [yes/no]")
        if prompt != "Approve and sign? [yes/no]":
            term.send("yes")
            term.expect(prompt)
        started = time.monotonic()
        term.proc.send_signal(signal.SIGINT)
        out, code = term.finish(timeout=10)
        took = time.monotonic() - started
        echo = term.echo_is_on()
    finally:
        term.close()
    assert code == 130, term.screen
    assert took < 5  # the old prompt thread kept it waiting for Enter
    flow_id = out.split("flow ", 1)[1].split(":", 1)[0]
    assert f"qes-async resume {flow_id} --store {store} --output {out_dir}" in term.screen
    assert echo


def test_sign_without_a_terminal_refuses_before_any_request(
    standalone_sandbox: dict[str, str], tmp_path: Path
) -> None:
    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    before = _requests(standalone_sandbox)
    result = _cli(
        standalone_sandbox,
        "sign",
        "-d",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "c-1",
        "-o",
        str(tmp_path / "o"),
        "--store",
        str(tmp_path / "f.db"),
    )
    assert result.returncode == 2, result.stderr
    assert "no terminal" in result.stderr
    assert "--passcode-from" in result.stderr
    assert _requests(standalone_sandbox) == before  # nothing was sent, nothing created


def test_sign_without_a_terminal_takes_its_answers_from_options(
    standalone_sandbox: dict[str, str], tmp_path: Path
) -> None:
    import threading
    import time

    from qes_async import make_pdf

    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    code_file = tmp_path / "passcode.txt"

    def type_the_sms() -> None:
        for _ in range(400):
            time.sleep(0.05)
            try:
                code_file.write_text(_latest_passcode(standalone_sandbox) + "\n")
                return
            except (AssertionError, KeyError, IndexError):
                continue

    helper = threading.Thread(target=type_the_sms, daemon=True)
    helper.start()
    result = _cli(
        standalone_sandbox,
        "sign",
        "-d",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "c-answers",
        "-o",
        str(tmp_path / "o"),
        "--store",
        str(tmp_path / "f.db"),
        "--consent",
        "yes",
        "--passcode-from",
        str(code_file),
        "--json",
    )
    helper.join(1)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # prompts and notes went to stderr
    assert data["outcome"] == "signed"
    assert data["signature_id"]
    assert data["documents"][0]["validation"] in ("untrusted", "valid")


def test_commands_other_than_sandbox_do_not_load_the_sandbox() -> None:
    code = (
        "import sys, qes_async._cli.main as cli; cli.build_parser(['status', 'sig-1']); "
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
        *NO_TERMINAL,
    )
    assert sign.returncode == 4, sign.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "flows.db") as db:
        (flow_id,) = db.execute("SELECT flow_id FROM qes_flows").fetchone()
    again = _cli(
        standalone_sandbox, "resume", flow_id, *store, "--document", str(pdf), *NO_TERMINAL
    )
    assert again.returncode == 4, (again.stdout, again.stderr)  # not 3, "declined"
    assert "kyc_required" in again.stdout
