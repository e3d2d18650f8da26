"""A signed PDF that looks whole (%PDF- ... %%EOF) but cannot be parsed is a verdict,
``unreadable``, never pyHanko's own exception escaping the flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from qes_async import make_pdf
from qes_async._flow.pades import validate_pdf, validate_pdf_once

UNREADABLE = "unreadable"

pytest.importorskip("pyhanko")

BROKEN = {
    "garbage_body": b"%PDF-1.7\n\x00\x01 this is not a PDF body \xff\n%%EOF\n",
    "truncated_xref": make_pdf("Loan")[:-60] + b"\nstartxref\n999999\n%%EOF\n",
    "bad_trailer": b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ntrailer << /Root 9 0 R >>\n%%EOF",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_an_unparseable_pdf_is_unreadable(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "signed.pdf"
    path.write_bytes(BROKEN[kind])
    result = validate_pdf(path)
    assert result.outcome == UNREADABLE
    assert "pyHanko cannot read it" in result.detail


def test_the_verdict_is_remembered_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "signed.pdf"
    path.write_bytes(BROKEN["garbage_body"])
    first = validate_pdf_once(path, "ab" * 32)
    again = validate_pdf_once(path, "ab" * 32)
    assert first.outcome == again.outcome == UNREADABLE


def test_a_missing_file_is_still_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        validate_pdf(tmp_path / "gone.pdf")
