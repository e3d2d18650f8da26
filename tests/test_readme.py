"""Every Python code block in the README runs, against the sandbox, as a user would run it.

Blocks are complete programs and run in a fresh interpreter in an empty folder. A block
whose first line names a test file (``# test_signing.py``) is saved under that name and run
by pytest the way a fresh project would run it: no pytest configuration of ours (an empty
``pytest.ini`` in that folder is the root), so pytest-asyncio runs in its default strict
mode and the fixtures come from the package's ``pytest11`` entry point alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
TEST_FILE = re.compile(r"# (test_\w+\.py)\b")
# Variables that would carry our own pytest settings into the fresh project.
_PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
# pytest-asyncio asks every project to choose a fixture loop scope; a fresh one has not.
_UNSET_LOOP_SCOPE = (
    'ignore:The configuration option "asyncio_default_fixture_loop_scope" is unset'
    ":pytest.PytestDeprecationWarning"
)


def _block(marker: str) -> tuple[int, str]:
    """The only README block containing ``marker``, with its index."""
    found = [(i, code) for i, code in enumerate(BLOCKS) if marker in code]
    assert len(found) == 1, f"expected one README block with {marker!r}, found {len(found)}"
    return found[0]


def _run_block(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run one block in ``folder`` as a user would: a program, or a test file under pytest."""
    env = {k: v for k, v in os.environ.items() if k not in _PYTEST_ENV}
    test_file = TEST_FILE.match(code)
    if test_file:
        (folder / test_file.group(1)).write_text(code, encoding="utf-8")
        (folder / "pytest.ini").write_text("", encoding="utf-8")  # the root: no settings
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(folder / "pytest.ini"),
            "--rootdir",
            str(folder),
            "-W",
            "error",
            "-W",
            _UNSET_LOOP_SCOPE,
            str(folder),
        ]
    else:
        (folder / "block.py").write_text(code, encoding="utf-8")
        command = [sys.executable, "-W", "error", str(folder / "block.py")]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_readme_has_the_two_commands_first() -> None:
    first = re.search(r"```(\w*)\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 6


# What a block's output must show, by a string that marks the block.
EXPECTED_OUTPUT = {
    # the testing section's test file: pytest-asyncio in strict mode, and the test passes
    "def test_my_app_signs": (r"asyncio: mode=(Mode\.)?strict", r"\b1 passed\b"),
    # the webhooks example: the waiter was woken by at least one webhook
    'webhook(s)")': (r"(?m)^pending after [1-9][0-9]* webhook\(s\)$",),
    # the first program: signed, and the signature checks as valid against the sandbox CA
    "trust_roots=[sandbox.ca_pem]": (r"^signed \[\(.*'valid'\)\]$",),
    # the ASGI block: the mounted receiver refuses before reading; the helpers answer JSON
    "webhook_app(receiver))": (
        r"(?m)^401 unauthorized$",
        r"(?m)^\{'waiting_for': None\}$",
        r"(?m)^404 no_such_flow$",
    ),
}


def _sandbox_table() -> dict[str, str]:
    """The sandbox section's table of control endpoints: ``"METHOD /path"`` to its row."""
    text = README.read_text(encoding="utf-8")
    section = text[
        text.index("### The sandbox server") : text.index("## Running with many workers")
    ]
    rows = {}
    for line in section.splitlines():
        found = re.match(r"\| `(GET|POST|PUT|DELETE) (/_sandbox/\S*)` \|", line)
        if found:
            rows[f"{found.group(1)} {found.group(2)}"] = line
    return rows


def test_readme_documents_every_control_endpoint_and_its_body_fields() -> None:
    from qes_async.sandbox._control import CONTROL_ENDPOINTS

    rows = _sandbox_table()
    listed = {f"{e.method} /_sandbox/{e.path}": e for e in CONTROL_ENDPOINTS}
    assert set(rows) == set(listed)
    for name, endpoint in listed.items():
        for field, _ in endpoint.body:
            assert f"`{field}`" in rows[name], f"README's {name} row lacks the field {field}"


@pytest.mark.parametrize("marker", EXPECTED_OUTPUT)
def test_readme_blocks_with_expected_output_exist(marker: str) -> None:
    _block(marker)


def test_readme_test_block_is_a_strict_mode_test_file() -> None:
    """The testing section's block is a test file for a fresh project: no conftest, no
    ``pytest_plugins`` (the entry point loads the fixtures), tests marked for strict mode."""
    _, code = _block("def test_my_app_signs")
    assert TEST_FILE.match(code), "the testing block must start with its file name"
    assert "pytest_plugins" not in code
    assert "asyncio_mode" not in code
    assert "@pytest.mark.asyncio" in code


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    done = _run_block(code, tmp_path)
    assert done.returncode == 0, (
        f"README block {index} failed:\n{code}\n{done.stdout}\n{done.stderr}"
    )
    for marker, patterns in EXPECTED_OUTPUT.items():
        if marker in code:
            for pattern in patterns:
                assert re.search(pattern, done.stdout, re.IGNORECASE), (
                    f"README block {index}: output does not match {pattern!r}:\n{done.stdout}"
                )


def test_readme_shows_the_sandbox_banner_as_printed() -> None:
    import argparse
    import io

    from qes_async.sandbox._standalone import add_arguments, run

    text = README.read_text(encoding="utf-8")
    shown = re.search(r"\$ qes-async sandbox (.*?)\n(.*?Press Ctrl\+C to stop\.)\n", text, re.S)
    assert shown is not None
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = shown.group(1).split()
    port = options.pop(options.index("--port") + 1)
    options.remove("--port")  # any free port: the shown one may be taken here
    out = io.StringIO()
    assert run(parser.parse_args([*options, "--serve-for", "0.05"]), out) == 0
    url = out.getvalue().splitlines()[0].rsplit(" ", 1)[-1]
    printed = out.getvalue().replace(url, f"http://127.0.0.1:{port}").splitlines()
    assert shown.group(2).splitlines() == printed[: printed.index("Press Ctrl+C to stop.") + 1]


async def test_the_fastapi_passcode_endpoint_leaves_no_passcode_in_the_frames() -> None:
    """The README's FastAPI endpoint takes the passcode out of the parsed body, so its frame
    does not show it while the inbox takes it (FastAPI's own frames keep the raw body)."""
    import types

    import httpx
    from conftest import register_secret
    from frame_locals import leaks, sdk_frame_locals

    from qes_async import SignerInbox

    passcode = "91827364"
    register_secret(passcode)
    _, code = _block('@app.post("/flows/{flow_id}/passcode")')
    module = types.ModuleType("readme_fastapi")
    exec(compile(code.replace("asyncio.run(main())", ""), "README.md", "exec"), module.__dict__)

    class BrokenInbox(SignerInbox):
        async def submit_passcode(self, flow_id: str, passcode: object) -> object:
            raise RuntimeError("the inbox failed")

    module.inbox = BrokenInbox()  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=module.app)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        with pytest.raises(RuntimeError) as info:
            await http.post("/flows/f-1/passcode", json={"passcode": passcode})
    modules = ("qes_async", "readme_fastapi")
    assert "passcode" in {f for f, _, _ in sdk_frame_locals(info.value, modules)}
    assert leaks(info.value, passcode, modules=modules) == []
