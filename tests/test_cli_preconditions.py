"""`sign` and `resume` check --output and --store before the first request: once the client
types the SMS code the signature is done, too late to find either unusable."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qes_async import make_pdf
from qes_async._cli.main import main


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A TCP port that counts connections: the independent record of any request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    monkeypatch.setenv("QES_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("QES_CLIENT_ID", "id")
    monkeypatch.setenv("QES_CLIENT_SECRET", "secret-value-1")
    monkeypatch.delenv("QES_ENVIRONMENT", raising=False)
    try:
        yield accepted
    finally:
        stop.set()
        thread.join(2)
        server.close()


def _sign(tmp: Path, *extra: str) -> int:
    pdf = tmp / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    args = ["sign", "-d", str(pdf), "--mobile", "+31612345678", "--client-reference", "c-1"]
    return main([*args, *extra])


def _bad_paths(tmp: Path) -> dict[str, Path]:
    a_file = tmp / "a-file"
    a_file.write_bytes(b"not a folder, not a database")
    folder = tmp / "a-folder"
    folder.mkdir()
    return {"file": a_file, "below_file": a_file / "x", "folder": folder}


@pytest.mark.parametrize("kind", ["file", "below_file"])
def test_sign_with_an_unusable_output_stops_before_any_request(
    tmp_path: Path, listener: list[int], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    output = _bad_paths(tmp_path)[kind]
    code = _sign(tmp_path, "--output", str(output), "--store", str(tmp_path / "f.db"))
    err = capsys.readouterr().err
    assert (code, listener) == (2, [])
    assert "--output" in err
    assert "Pass a writable folder" in err


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_sign_with_an_unusable_store_stops_before_any_request(
    tmp_path: Path, listener: list[int], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    store = _bad_paths(tmp_path)[kind]
    no_terminal = ("--consent", "yes", "--passcode-from", "-")
    code = _sign(tmp_path, "--output", str(tmp_path / "out"), "--store", str(store), *no_terminal)
    err = capsys.readouterr().err
    assert (code, listener) == (2, [])
    assert "--store" in err
    assert "unexpected" not in err


def test_resume_from_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, listener: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "missing.db"
    code = main(["resume", "flow-1", "--store", str(store), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert (code, listener) == (2, [])
    assert "no flow store" in err
    assert not store.exists()
