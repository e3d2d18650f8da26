"""QESClient against the sandbox server: every endpoint's success path and a whole ceremony."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import register_secret

from qes_async import (
    Document,
    FakeClock,
    InvalidPasscodeError,
    NotFoundError,
    QESClient,
    RetryPolicy,
    Status,
    make_pdf,
)
from qes_async.sandbox import IdentityCase, SandboxServer

MOBILE = "+31687654321"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    clients = {
        "alice": IdentityCase(),
        "bob": IdentityCase(device_model="A", signing_device_model="B"),
    }
    async with SandboxServer(clock=FakeClock(), processing_delay=0, seed=7, clients=clients) as s:
        register_secret(s.client_secret, MOBILE)
        yield s


def client_for(sandbox: SandboxServer) -> QESClient:
    return QESClient(
        sandbox.client_id,
        sandbox.client_secret,
        base_url=sandbox.url,
        clock=sandbox.clock,
        retry=RetryPolicy(jitter=None),
    )


async def test_whole_happy_path(sandbox: SandboxServer, tmp_path: Path) -> None:
    pdf_a, pdf_b = make_pdf("Loan contract"), make_pdf("Annex")
    async with client_for(sandbox) as client:
        workflow = await client.create_workflow("alice")
        sid = workflow.signature_id
        assert (await client.get_signature_status(sid)).status in (Status.NEW, Status.PENDING)
        await client.upload_documents(
            sid,
            [
                Document.from_bytes("loan.pdf", pdf_a, display_name="Loan contract"),
                Document.from_bytes("annex.pdf", pdf_b),
            ],
        )
        await client.upload_mobile_number(sid, MOBILE)
        assert (await client.get_signature_status(sid)).status is Status.USER_CONSENT_REQUIRED
        details = await client.get_signature_details(sid, language="en")
        assert [d.file_name for d in details.documents] == ["loan.pdf", "annex.pdf"]
        assert [d.sha256 for d in details.documents] == [
            hashlib.sha256(pdf_a).hexdigest(),
            hashlib.sha256(pdf_b).hexdigest(),
        ]
        await client.approve_documents(sid, details, passcode_language="en")
        status = await client.get_signature_status(sid)
        assert status.status is Status.CONFIRMATION_REQUIRED
        passcode = sandbox.latest_passcode(sid)
        register_secret(passcode)
        await client.confirm_signature(sid, passcode)
        assert (await client.get_signature_status(sid)).status is Status.SIGNED
        signed = [
            await client.download_signed_document(sid, d.document_id, tmp_path)
            for d in details.documents
        ]
        contract = await client.get_infocert_contract(sid)
    for item in signed:
        assert item.path.parent == tmp_path
        assert item.path.read_bytes()[:5] == b"%PDF-"
        assert hashlib.sha256(item.path.read_bytes()).hexdigest() == item.sha256
    assert contract is None or contract.startswith(b"%PDF-")
    routes = [r.route for r in sandbox.request_log]
    assert routes.count("create_workflow") == 1
    assert routes.count("approve_documents") == 1
    assert routes.count("confirm_signature") == 1


async def test_selfie_path(sandbox: SandboxServer) -> None:
    async with client_for(sandbox) as client:
        sid = (await client.create_workflow("bob")).signature_id
        await client.upload_documents(sid, [Document.from_bytes("a.pdf", make_pdf())])
        await client.upload_mobile_number(sid, MOBILE)
        assert (await client.get_signature_status(sid)).status is Status.SELFIE_REQUIRED
        await client.upload_selfie(sid, b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9")
        assert (await client.get_signature_status(sid)).status is Status.USER_CONSENT_REQUIRED


async def test_wrong_passcode_and_unknown_signature(sandbox: SandboxServer) -> None:
    async with client_for(sandbox) as client:
        with pytest.raises(NotFoundError):
            await client.get_signature_status("no-such-id")
        sid = (await client.create_workflow("alice")).signature_id
        await client.upload_documents(sid, [Document.from_bytes("a.pdf", make_pdf())])
        await client.upload_mobile_number(sid, MOBILE)
        await client.approve_documents(sid, await client.get_signature_details(sid))
        right = sandbox.latest_passcode(sid)
        wrong = "000000" if right != "000000" else "111111"
        register_secret(right)
        with pytest.raises(InvalidPasscodeError) as info:
            await client.confirm_signature(sid, wrong)
        assert info.value.attempts_left == 2


async def test_a_closed_client_refuses_calls_instead_of_opening_a_new_session(
    sandbox: SandboxServer,
) -> None:
    client = QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url)
    await client.create_workflow("client-1")
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.create_workflow("client-1")
