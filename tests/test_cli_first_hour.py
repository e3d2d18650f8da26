"""The command line in a newcomer's first hour: every expected failure is one line and a
documented exit code, decided before anything is sent; the README's table agrees."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from test_cli import NO_TERMINAL, _cli, standalone_sandbox  # noqa: F401 - a fixture

from qes_async import make_pdf
from qes_async._cli.main import EXIT_CODES, main

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_table() -> dict[int, str]:
    text = README.read_text()
    section = text[text.index("## CLI reference") : text.index("## Statuses")]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE)
    return {int(code): meaning.replace("`", "") for code, meaning in rows}


def test_the_readme_exit_code_table_is_the_code_table() -> None:
    assert _readme_table() == {code: text.replace("`", "") for code, text in EXIT_CODES.items()}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("QES_CLIENT_ID", "QES_CLIENT_SECRET", "QES_BASE_URL", "QES_ENVIRONMENT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QES_CLIENT_ID", "cid")
    monkeypatch.setenv("QES_CLIENT_SECRET", "a-secret-value")
    return monkeypatch


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "unexpected" not in lines[0], err
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ walking the table


def test_code_0_success(tmp_path: Path) -> None:
    assert main(["demo", "--output", str(tmp_path)]) == 0


def test_code_1_is_left_for_real_bugs(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import qes_async._cli.main as cli

    async def broken(args: object) -> int:
        raise RuntimeError("a bug")

    env.setenv("QES_BASE_URL", "http://127.0.0.1:1")
    env.setattr(cli, "cmd_status", broken)
    assert main(["status", "sig-1"]) == 1
    assert "unexpected error: RuntimeError" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("QES_ENVIRONMENT", "staging", "QES_ENVIRONMENT"),
        ("QES_BASE_URL", "api.example.com", "QES_BASE_URL"),
        ("QES_BASE_URL", "http://api.example.com", "QES_BASE_URL"),
    ],
)
def test_code_2_bad_configuration_is_named_by_its_variable(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    var: str,
    value: str,
    named: str,
) -> None:
    env.setenv(var, value)
    assert main(["status", "sig-1"]) == 2  # QES_ENVIRONMENT=staging used to exit 7
    line = _one_line(capsys.readouterr().err)
    assert named in line


def test_code_2_resume_of_an_unknown_flow_asks_nobody(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "flows.db"
    assert main(["flows", "--store", str(store)]) == 2  # no store: nothing is created
    assert not store.exists()
    capsys.readouterr()
    import asyncio

    from qes_async import SQLiteFlowStore

    async def make() -> None:
        async with SQLiteFlowStore(store):
            pass

    asyncio.run(make())
    env.setenv("QES_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    code = main(["resume", "no-such-flow", "--store", str(store), *NO_TERMINAL])
    assert code == 2  # the old code said 5, "the service refused", without asking it
    line = _one_line(capsys.readouterr().err)
    assert "no flow 'no-such-flow'" in line
    assert "qes-async flows --store" in line


def test_code_2_a_missing_extra_is_found_before_the_demo_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyhanko" else real(name, *a)
    )
    assert main(["demo", "--output", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "pip install 'qes-async[sandbox]'" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nxx"])
def test_code_2_unusable_trust_roots_are_refused_before_any_request(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(content)
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf("A"))
    env.setenv("QES_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    code = main(
        [
            "sign",
            "-d",
            str(pdf),
            "--mobile",
            "+31612345678",
            "--client-reference",
            "c",
            "-o",
            str(tmp_path / "o"),
            "--store",
            str(tmp_path / "f.db"),
            "--trust-roots",
            str(roots),
            *NO_TERMINAL,
        ]
    )
    assert code == 2
    assert "--trust-roots" in _one_line(capsys.readouterr().err)


def test_code_3_declined(standalone_sandbox: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf("A"))
    result = _cli(
        standalone_sandbox,
        "sign",
        "-d",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "c-decline",
        "-o",
        str(tmp_path / "o"),
        "--store",
        str(tmp_path / "f.db"),
        "--consent",
        "no",
        "--passcode-from",
        "-",
        "--json",
    )
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert (data["outcome"], data["documents"]) == ("declined", [])
    assert data["signature_id"]


def test_code_4_kyc_required_with_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--scenario", "kyc", "--json", "--output", str(tmp_path)]) == 4
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "kyc_required"  # the old kyc JSON had no outcome
    assert data["signature_id"]
    assert data["documents"] == []


def test_code_5_the_service_refused(standalone_sandbox: dict[str, str]) -> None:  # noqa: F811
    result = _cli(standalone_sandbox, "status", "no-such-signature")
    assert result.returncode == 5
    _one_line(result.stderr)


def test_code_6_unreachable_names_the_host_and_port(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    env.setenv("QES_BASE_URL", f"http://127.0.0.1:{port}")
    assert main(["status", "sig-1"]) == 6
    line = _one_line(capsys.readouterr().err)
    assert f"127.0.0.1:{port}" in line


def test_code_7_invalid_input(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf("A"))
    env.setenv("QES_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    code = main(
        [
            "sign",
            "-d",
            str(pdf),
            "--mobile",
            "0612",
            "--client-reference",
            "c",
            "-o",
            str(tmp_path / "o"),
            "--store",
            str(tmp_path / "f.db"),
            *NO_TERMINAL,
        ]
    )
    assert code == 7
    assert "mobile_number" in _one_line(capsys.readouterr().err)


# 130 is walked in tests/test_cli.py (Ctrl+C at each prompt, in a pseudo-terminal).


# ----------------------------------------------------------------- finding things


def test_version_and_a_useful_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    from qes_async import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "qes-async demo" in out
    assert "sign" in out
    assert "flows" in out


def test_flows_lists_what_is_stored_and_status_lists_document_ids(
    standalone_sandbox: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf("A"))
    store = str(tmp_path / "f.db")
    declined = _cli(
        standalone_sandbox,
        "sign",
        "-d",
        str(pdf),
        "--mobile",
        "+31612345678",
        "--client-reference",
        "c-list",
        "-o",
        str(tmp_path / "o"),
        "--store",
        store,
        "--consent",
        "no",
        "--passcode-from",
        "-",
        "--json",
    )
    data = json.loads(declined.stdout)
    listed = _cli(standalone_sandbox, "flows", "--store", store, "--json")
    assert listed.returncode == 0, listed.stderr
    flows = json.loads(listed.stdout)["flows"]
    assert [(f["flow_id"], f["signature_id"], f["outcome"]) for f in flows] == [
        (data["flow_id"], data["signature_id"], "declined")
    ]
    table = _cli(standalone_sandbox, "flows", "--store", store)
    assert data["flow_id"] in table.stdout
    assert "NEXT DEADLINE" in table.stdout
    status = _cli(standalone_sandbox, "status", data["signature_id"], "--json")
    documents = json.loads(status.stdout)["documents"]
    assert [d["file_name"] for d in documents] == ["a.pdf"]
    plain = _cli(standalone_sandbox, "status", data["signature_id"])
    assert documents[0]["document_id"] in plain.stdout
    assert "None" not in plain.stdout  # the old line said "(code None)"


def test_the_sandbox_refuses_a_port_that_is_no_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sandbox", "--port", "99999"])  # the old code died with an OverflowError
    assert info.value.code == 2
    assert "not a port" in capsys.readouterr().err


def test_the_sandbox_on_a_taken_port_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["sandbox", "--port", str(port), "--serve-for", "1"])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"Is port {port} taken?" in line
