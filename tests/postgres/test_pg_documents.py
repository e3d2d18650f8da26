"""PostgresDocumentSource: bytes stored with the flow, bounded, checked, removed at its end;
a flow started from bytes on one worker is taken over and signed by another with no app
storage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pg_cluster import pg_dsn, pg_prefix

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    DocumentSourceError,
    FlowOutcome,
    HybridWaiter,
    InvalidInputError,
    QESClient,
    SignatureFlow,
    make_pdf,
)
from qes_async.postgres import PostgresDocumentSource, PostgresFlowStore, Worker, WorkerSettings
from qes_async.sandbox import IdentityCase, SandboxServer

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = pytest.mark.postgres
PDF = make_pdf("Loan")


async def _count(store: PostgresFlowStore) -> int:
    return int(await store.pool.fetchval(f"SELECT count(*) FROM {store.tables.documents}"))


async def test_documents_round_trip_in_order_with_their_names(
    pg_dsn: str, pg_prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "terms.pdf"
    path.write_bytes(make_pdf("Terms"))
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as store:
        source = PostgresDocumentSource(store)
        docs = [Document.from_bytes("loan.pdf", PDF, "Loan"), Document.from_path(path, "Terms")]
        await source.store("f-1", docs)
        loaded = await source.load("f-1")
        assert [(d.file_name, d.display_name, d.path) for d in loaded] == [
            ("loan.pdf", "Loan", None),
            ("terms.pdf", "Terms", None),  # the bytes, not the path: any worker reads them
        ]
        assert [await d.sha256() for d in loaded] == [await d.sha256() for d in docs]
        await source.store("f-1", docs[:1])  # stored again: what it holds now, nothing more
        assert len(await source.load("f-1")) == 1
        assert await source.load("unknown") == []
        await source.discard("f-1")
        assert await _count(store) == 0


async def test_a_document_over_max_document_size_is_refused_and_nothing_kept(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as store:
        source = PostgresDocumentSource(store, max_document_size=len(PDF) - 1)
        with pytest.raises(InvalidInputError, match="keeps at most"):
            await source.store("f-2", [Document.from_bytes("loan.pdf", PDF)])
        assert await _count(store) == 0
        await PostgresDocumentSource(store, max_document_size=len(PDF)).store(
            "f-2", [Document.from_bytes("loan.pdf", PDF)]
        )  # control: at the limit it is kept
        assert await _count(store) == 1


async def test_changed_bytes_are_refused(pg_dsn: str, pg_prefix: str) -> None:
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as store:
        source = PostgresDocumentSource(store)
        await source.store("f-3", [Document.from_bytes("loan.pdf", PDF)])
        await store.pool.execute(
            f"UPDATE {store.tables.documents} SET data = $1", b"%PDF-1.7 forged"
        )
        with pytest.raises(DocumentSourceError, match="changed"):
            await source.load("f-3")


async def test_prune_removes_the_documents_of_finished_flows_only(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True) as store:
        source = PostgresDocumentSource(store)
        for flow_id in ("done", "running"):
            await store.create(flow_id, {"format": 1})
            await source.store(flow_id, [Document.from_bytes("loan.pdf", PDF)])
        await store.pool.execute(
            f"UPDATE {store.tables.flows} SET finished = true WHERE flow_id = 'done'"
        )
        assert await source.prune() == 1
        assert await source.load("done") == []
        assert len(await source.load("running")) == 1


async def test_a_flow_from_bytes_is_taken_over_and_signed_with_no_app_storage(
    pg_dsn: str, pg_prefix: str, tmp_path: Path
) -> None:
    settings = WorkerSettings(prefix=pg_prefix, orphan_grace=0, sweep_interval=3600)
    async with (
        SandboxServer(seed=5, clients={"client-1": IdentityCase()}) as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
    ):
        asked = asyncio.Event()

        async def parked(request: ConsentRequest) -> bool:
            asked.set()
            await asyncio.Event().wait()
            return True

        def passcode(request: Any) -> str:
            return sandbox.latest_passcode(request.signature_id)

        def options(worker: Worker, signer: CallbackSigner) -> dict[str, Any]:
            return {
                "client": client,
                "store": worker.store,
                "signer": signer,
                "waiter": HybridWaiter(client, worker.dispatcher, safety_interval=0.2),
                "download_dir": tmp_path / "signed",
                "lease_ttl": settings.lease_ttl,
                "document_source": worker.document_source,
            }

        async def no_resume(flow_id: str) -> SignatureFlow:
            raise AssertionError("worker a does not sweep here")

        a = Worker(pg_dsn, resume=no_resume, settings=settings, worker_id="a")
        b_signer = CallbackSigner(consent=lambda request: True, passcode=passcode)

        async def resume(flow_id: str) -> SignatureFlow:
            # The README's callback: nothing of the app's own beyond the id.
            return await SignatureFlow.resume(flow_id, **options(b, b_signer))

        b = Worker(pg_dsn, resume=resume, settings=settings, worker_id="b")
        async with PostgresFlowStore(pg_dsn, prefix=pg_prefix, migrate=True):
            pass
        async with a:
            opts = options(a, CallbackSigner(consent=parked, passcode=passcode))
            flow = SignatureFlow(
                opts.pop("client"),
                documents=[Document.from_bytes("loan.pdf", PDF)],
                mobile_number="+31612345678",
                client_reference="client-1",
                **opts,
            )
            a.drive(flow)
            await asyncio.wait_for(asked.wait(), 10)
        # a stopped (its flow's lease released); b's sweeper takes the flow over.
        async with b:
            assert await b.sweep() == 1
            result = await asyncio.wait_for(b.running[flow.flow_id], 30)
            left = await _count(b.pg)
    assert result is not None
    assert result.outcome is FlowOutcome.SIGNED
    assert left == 0  # the bytes went with the flow's end
