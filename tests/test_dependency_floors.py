"""The dependency floors admit no release with a known security fix missing.

Each row: the package, the first release carrying the fix, and what it fixes. The receiver
is an aiohttp server facing the internet, so the server-side fixes matter here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

KNOWN_FIXES = [
    ("aiohttp", (3, 10, 11), "CVE-2024-52304 request smuggling (chunk extensions)"),
    ("aiohttp", (3, 10, 11), "CVE-2024-52303 memory leak on MatchInfoError (DoS)"),
    ("aiohttp", (3, 12, 14), "CVE-2025-53643 request smuggling (trailer sections)"),
    ("aiohttp", (3, 13, 3), "CVE-2025-69223 auto_decompress zip bomb"),
    ("cryptography", (42, 0, 4), "CVE-2024-26130 NULL dereference in PKCS#12"),
    ("cryptography", (44, 0, 1), "CVE-2024-12797 OpenSSL in the wheels (RPK auth)"),
]


def _floors() -> dict[str, tuple[int, ...]]:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    floors: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec.replace(" ", ""))
        if found:
            floors[found[1].lower()] = tuple(int(p) for p in found[2].split("."))
    return floors


@pytest.mark.parametrize(("package", "fixed_in", "fix"), KNOWN_FIXES)
def test_the_floor_carries_the_fix(package: str, fixed_in: tuple[int, ...], fix: str) -> None:
    floor = _floors()[package]
    assert floor >= fixed_in, f"{package}>={floor} admits releases without {fix}"
