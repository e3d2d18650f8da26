"""Every Python code block in the README runs, against the sandbox, as a user would run it.

Blocks are complete programs and run in a fresh interpreter in an empty folder; a block
that declares pytest fixtures (``pytest_plugins``) runs as a test file under pytest.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_the_two_commands_first() -> None:
    first = re.search(r"```(\w*)\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(2).splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if "pytest_plugins" in code:
        (tmp_path / "test_from_readme.py").write_text(code, encoding="utf-8")
        (tmp_path / "pytest.ini").write_text(
            "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
            "filterwarnings = error\n",
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    else:
        (tmp_path / "block.py").write_text(code, encoding="utf-8")
        command = [sys.executable, "-W", "error", str(tmp_path / "block.py")]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (
        f"README block {index} failed:\n{code}\n{done.stdout}\n{done.stderr}"
    )
