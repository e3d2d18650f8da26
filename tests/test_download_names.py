"""Signed documents get a file of their own: names that reduce alike never share a path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flow_helpers import world

from qes_async import Document, make_pdf
from qes_async._client.download import safe_file_name

COLLIDING = [("contract", "contract.pdf"), (".loan.pdf", "loan.pdf"), ("a.PDF", "a.pdf")]


@pytest.mark.parametrize(("first", "second"), COLLIDING)
async def test_two_documents_whose_names_reduce_alike_keep_both_files(
    tmp_path: Path, first: str, second: str
) -> None:
    documents = [
        Document.from_bytes(first, make_pdf("First contract")),
        Document.from_bytes(second, make_pdf("Second contract")),
    ]
    async with world(tmp_path) as w:
        result = await w.flow(documents=documents).run()
    assert result.outcome.value == "signed"
    paths = [Path(d.path) for d in result.documents]
    assert len(set(paths)) == 2
    for record, path in zip(result.documents, paths, strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256
    assert set(paths) <= set(paths[0].parent.iterdir())


async def test_a_download_never_replaces_a_file_already_in_the_folder(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await w.flow(documents=[Document.from_bytes("loan.pdf", make_pdf("L"))]).run()
        record = result.documents[0]
        folder = Path(record.path).parent
        before = Path(record.path).read_bytes()
        again = await w.client.download_signed_document(
            result.signature_id, record.document_id, folder
        )
    assert Path(again.path) != Path(record.path)
    assert Path(record.path).read_bytes() == before
    assert Path(again.path).name.startswith("loan-")


@pytest.mark.parametrize(
    "name",
    ["x" * 400, "é" * 300 + ".pdf", "../../" + "y" * 300 + ".pdf", "\u202e" + "z" * 260],
)
def test_long_server_names_are_cut_keeping_pdf(name: str) -> None:
    reduced = safe_file_name(name, "doc-1")
    assert reduced.endswith(".pdf")
    assert len(reduced.encode("utf-8")) <= 200
    assert "/" not in reduced


async def test_a_server_name_over_255_bytes_still_downloads(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        documents = [Document.from_bytes("n" * 300 + ".pdf", make_pdf("Long"))]
        result = await w.flow(documents=documents).run()
    assert result.outcome.value == "signed"
    assert Path(result.documents[0].path).name.endswith(".pdf")
