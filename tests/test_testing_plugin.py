"""The pytest fixtures the package offers to users, used the way a user would."""

from __future__ import annotations

from qes_async import Document, FlowOutcome, QESClient, SignatureFlow, Status, make_pdf
from qes_async._signer import CallbackSigner
from qes_async.sandbox import SandboxServer

pytest_plugins = ["qes_async.testing"]


async def test_client_fixture_talks_to_the_sandbox_fixture(
    qes_client: QESClient, qes_sandbox: SandboxServer
) -> None:
    workflow = await qes_client.create_workflow("client-1")
    report = await qes_client.get_signature_status(workflow.signature_id)
    assert report.status is Status.PENDING
    routes = [r.route for r in qes_sandbox.request_log]
    assert routes == ["create_token", "create_workflow", "get_signature_status"]


async def test_a_whole_flow_with_the_fixtures(
    qes_client: QESClient, qes_signer: CallbackSigner, tmp_path: object
) -> None:
    flow = SignatureFlow(
        qes_client,
        documents=[Document.from_bytes("a.pdf", make_pdf("A"))],
        mobile_number="+31612345678",
        client_reference="client-2",
        signer=qes_signer,
        download_dir=str(tmp_path),
    )
    result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.documents) == 1
