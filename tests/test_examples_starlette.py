"""The Starlette example's signer endpoints drive a real flow against the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import register_secret
from frame_locals import leaks, sdk_frame_locals
from test_examples import load

from qes_async import (
    Document,
    FlowOutcome,
    QESClient,
    SignatureFlow,
    SignerInbox,
    WebhookDispatcher,
    make_pdf,
)
from qes_async.sandbox import SandboxServer, sandbox_ca
from qes_async.webhooks import BasicAuth, WebhookReceiver

MOBILE = "+31612345678"


async def _until_asked(http: httpx.AsyncClient, flow_id: str, what: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            body: dict[str, Any] = (await http.get(f"/flows/{flow_id}/pending")).json()
            if body["waiting_for"] == what:
                return body
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), 20)


async def test_consent_and_passcode_endpoints_sign_a_document(tmp_path: Path) -> None:
    register_secret(MOBILE)
    inbox = SignerInbox()
    receiver = WebhookReceiver(WebhookDispatcher(), BasicAuth("fourthline", "starlette-pw-2"))
    app = load("starlette_webhooks").create_app(receiver, inbox)
    async with (
        SandboxServer() as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        flow = SignatureFlow(
            client,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"), display_name="Loan")],
            mobile_number=MOBILE,
            client_reference="client-3",
            signer=inbox,
            download_dir=tmp_path,
            trust_roots=[sandbox_ca().certificate_pem],
        )
        running = asyncio.ensure_future(flow.run())
        try:
            asked = await _until_asked(http, flow.flow_id, "consent")
            assert asked["documents"] == [{"file_name": "loan.pdf", "display_name": "Loan"}]
            assert [c["title"] for c in asked["legal_conditions"]] == [
                "InfoCert QTSP terms and conditions",
                "InfoCert privacy notice",
            ]
            approved = await http.post(f"/flows/{flow.flow_id}/consent", json={"approve": True})
            assert (approved.status_code, approved.json()["result"]) == (200, "accepted")

            asked = await _until_asked(http, flow.flow_id, "passcode")
            assert asked["sent_to"] == "+31******678"
            state = flow.state
            assert state is not None
            right = sandbox.latest_passcode(state.generations[-1].signature_id or "")
            register_secret(right)
            wrong = "000000" if right != "000000" else "111111"
            refused = await http.post(f"/flows/{flow.flow_id}/passcode", json={"passcode": wrong})
            assert refused.status_code == 422
            assert refused.json() == {
                "result": "wrong_passcode",
                "accepted": False,
                "attempts_left": 2,
                "message": "Wrong passcode. 2 attempts left.",
            }
            taken = await http.post(f"/flows/{flow.flow_id}/passcode", json={"passcode": right})
            assert (taken.status_code, taken.json()["result"]) == (200, "accepted")
            result = await asyncio.wait_for(running, 20)
        finally:
            running.cancel()
        unknown = await http.post("/flows/nope/passcode", json={"passcode": "123456"})
    assert result.outcome is FlowOutcome.SIGNED
    assert [d.validation for d in result.documents] == ["valid"]
    assert unknown.status_code == 404
    assert unknown.json()["result"] == "no_such_flow"


async def test_no_frame_of_the_passcode_endpoint_holds_the_passcode() -> None:
    """The endpoint parses the JSON body: neither that body nor the passcode waits in its
    frame (or the SDK's) while the inbox takes the passcode."""
    passcode = "27493018"
    register_secret(passcode)

    class BrokenInbox(SignerInbox):
        async def submit_passcode(self, flow_id: str, passcode: object) -> Any:
            raise RuntimeError("the inbox failed")

    receiver = WebhookReceiver(WebhookDispatcher(), BasicAuth("fourthline", "starlette-pw-2"))
    app = load("starlette_webhooks").create_app(receiver, BrokenInbox())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        with pytest.raises(RuntimeError) as info:
            await http.post("/flows/f-1/passcode", json={"passcode": passcode})
    modules = ("qes_async", "example_starlette_webhooks")
    assert "passcode" in {f for f, _, _ in sdk_frame_locals(info.value, modules)}
    assert leaks(info.value, passcode, modules=modules) == []
