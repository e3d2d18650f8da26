"""Document sources: a flow started from bytes resumes, and restarts, anywhere with no app
storage; a document changed since the flow stored it is refused, never uploaded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import world

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    DocumentSource,
    DocumentSourceError,
    FileDocumentSource,
    FlowOutcome,
    MemoryDocumentSource,
    SignatureFlow,
    SQLiteFlowStore,
    make_pdf,
)

PDF = make_pdf("Loan")


def _parked_signer(asked: asyncio.Event) -> CallbackSigner:
    async def consent(request: ConsentRequest) -> bool:
        asked.set()
        await asyncio.Event().wait()  # the worker dies while the signer reads
        return True

    return CallbackSigner(consent=consent, passcode=lambda request: "")


async def _start_and_stop(w: Any, db: SQLiteFlowStore, source: DocumentSource) -> str:
    """Start a flow from bytes with ``source``, and stop it at the consent (a crash)."""
    asked = asyncio.Event()
    flow = w.flow(
        store=db,
        documents=[Document.from_bytes("loan.pdf", PDF, "Loan contract")],
        signer=_parked_signer(asked),
        document_source=source,
    )
    task = asyncio.ensure_future(flow.run())
    await asyncio.wait_for(asked.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return flow.flow_id


async def test_a_flow_from_bytes_resumes_on_another_worker_from_a_file_source(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        flow_id = await _start_and_stop(w, db, FileDocumentSource(tmp_path / "docs"))
        # Another worker: its own source object on the same folder, no documents given.
        source = FileDocumentSource(tmp_path / "docs")
        resumed = await SignatureFlow.resume(flow_id, **w.resume_kw(db, document_source=source))
        result = await resumed.run()
    assert result.outcome is FlowOutcome.SIGNED
    assert list((tmp_path / "docs").iterdir()) == []  # the copy went with the flow's end


async def test_a_resumed_flow_restarts_with_the_sources_documents(tmp_path: Path) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        source = MemoryDocumentSource()
        flow_id = await _start_and_stop(w, db, source)
        # The signer lets the 2-hour consent window pass: a new workflow, documents again.
        signer = w.signer(consent_delay=3 * 3600)
        resumed = await SignatureFlow.resume(
            flow_id, **w.resume_kw(db, signer=signer, document_source=source)
        )
        result = await resumed.run()
        uploads = [
            r.signature_id
            for r in w.sandbox.request_log
            if r.route == "upload_documents" and r.processed
        ]
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.generations) == 2
    assert uploads == [g.signature_id for g in result.generations]  # each got the bytes
    assert len(source) == 0  # discarded once the flow ended


async def test_without_a_source_a_flow_from_bytes_cannot_resume(tmp_path: Path) -> None:
    """Negative control: the same crash with no source needs the app's own copy."""
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        flow_id = await _start_and_stop(w, db, MemoryDocumentSource())
        with pytest.raises(Exception, match="Pass the same document"):
            await SignatureFlow.resume(flow_id, **w.resume_kw(db))


async def test_a_file_source_keeps_paths_and_refuses_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "contract.pdf"
    path.write_bytes(PDF)
    source = FileDocumentSource(tmp_path / "docs")
    await source.store("f-1", [Document.from_path(path, "Contract")])
    (loaded,) = await source.load("f-1")
    assert (loaded.path, loaded.file_name, loaded.display_name) == (
        path,
        "contract.pdf",
        "Contract",
    )
    path.write_bytes(make_pdf("Another loan"))
    with pytest.raises(DocumentSourceError, match="changed since the flow stored it") as caught:
        await source.load("f-1")
    assert (caught.value.flow_id, caught.value.file_name) == ("f-1", "contract.pdf")
    await source.discard("f-1")
    assert path.exists()  # the app's own file is never deleted


async def test_a_file_source_refuses_a_tampered_copy_and_a_missing_file(tmp_path: Path) -> None:
    source = FileDocumentSource(tmp_path / "docs")
    await source.store(
        "f-2", [Document.from_bytes("a.pdf", PDF), Document.from_bytes("b.pdf", PDF)]
    )
    assert [d.file_name for d in await source.load("f-2")] == ["a.pdf", "b.pdf"]
    (copy,) = (tmp_path / "docs").glob("*/1/b.pdf")
    copy.write_bytes(b"%PDF-1.7 forged")
    with pytest.raises(DocumentSourceError, match="changed"):
        await source.load("f-2")
    copy.unlink()
    with pytest.raises(DocumentSourceError, match="no longer where"):
        await source.load("f-2")
    assert await source.load("unknown") == []


def test_the_sources_are_document_sources(tmp_path: Path) -> None:
    assert isinstance(FileDocumentSource(tmp_path), DocumentSource)
    assert isinstance(MemoryDocumentSource(), DocumentSource)


class _CountingSource(MemoryDocumentSource):
    """A memory source that counts its loads."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, flow_id: str) -> list[Document]:
        self.loads += 1
        return await super().load(flow_id)


async def test_a_flow_resumed_past_its_upload_reads_no_documents(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        source = _CountingSource()
        flow_id = await _start_and_stop(w, db, source)
        # Uploaded already, at the consent: a resume (a takeover) reads no documents.
        resumed = await SignatureFlow.resume(flow_id, **w.resume_kw(db, document_source=source))
        assert source.loads == 0
        result = await resumed.run()
    assert (result.outcome, len(result.generations), source.loads) == (FlowOutcome.SIGNED, 1, 0)


async def test_a_flow_resumed_past_its_upload_reads_its_documents_for_a_restart(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        source = _CountingSource()
        # One that must restart (the consent window passes) reads them before its new
        # workflow is created, and uploads them.
        flow_id = await _start_and_stop(w, db, source)
        signer = w.signer(consent_delay=3 * 3600)
        resumed = await SignatureFlow.resume(
            flow_id, **w.resume_kw(db, signer=signer, document_source=source)
        )
        assert source.loads == 0
        result = await resumed.run()
    assert (result.outcome, len(result.generations), source.loads) == (FlowOutcome.SIGNED, 2, 1)


async def test_a_restart_whose_documents_are_gone_fails_before_a_new_workflow(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        source = MemoryDocumentSource()
        flow_id = await _start_and_stop(w, db, source)
        await source.discard(flow_id)  # lost meanwhile
        signer = w.signer(consent_delay=3 * 3600)
        resumed = await SignatureFlow.resume(
            flow_id, **w.resume_kw(db, signer=signer, document_source=source)
        )
        with pytest.raises(Exception, match="Pass the same document"):
            await resumed.run()
        creates = [r for r in w.sandbox.request_log if r.route == "create_workflow"]
    assert len(creates) == 1  # only the first generation's: none for the restart


async def test_a_file_source_has_its_copies_on_disk_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow is stored only after its documents are: a copy of bytes and the list must
    be fsynced by then, or a crash could leave a stored flow whose documents are gone."""
    import os

    synced: list[int] = []
    fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(fd)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    source = FileDocumentSource(tmp_path / "docs")
    await source.store("f-1", [Document.from_bytes("loan.pdf", PDF)])
    # The copy and the list, each a file and its folder.
    assert len(synced) >= 4
    (loaded,) = await source.load("f-1")
    assert await loaded.sha256() == (await Document.from_bytes("loan.pdf", PDF).sha256())


@pytest.mark.parametrize("kind", ["file", "memory"])
async def test_a_second_start_with_a_flow_id_in_use_leaves_the_first_flows_documents(
    tmp_path: Path, kind: str
) -> None:
    """A start refused because its flow id is taken (StaleStateError) must not have stored
    its documents over the first flow's: that flow, resumed and restarted, would find
    documents it never had and could never finish."""
    from qes_async import StaleStateError

    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        source: DocumentSource = (
            FileDocumentSource(tmp_path / "docs") if kind == "file" else MemoryDocumentSource()
        )
        flow_id = await _start_and_stop(w, db, source)
        other = w.flow(
            store=db,
            flow_id=flow_id,
            documents=[Document.from_bytes("other.pdf", make_pdf("Another loan"))],
            document_source=source,
        )
        with pytest.raises(StaleStateError):
            await other.run()
        # The first flow's signer lets the consent window pass: a new workflow, whose
        # upload reads the documents back from the source.
        signer = w.signer(consent_delay=3 * 3600)
        resumed = await SignatureFlow.resume(
            flow_id, **w.resume_kw(db, signer=signer, document_source=source)
        )
        result = await resumed.run()
        signatures = w.sandbox.service.signatures
        uploaded = [
            [d.file_name for d in signatures[g.signature_id].documents] for g in result.generations
        ]
    assert result.outcome is FlowOutcome.SIGNED
    assert uploaded == [["loan.pdf"], ["loan.pdf"]]  # its own document, both times
