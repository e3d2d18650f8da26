"""The plain path, end to end through raw HTTP."""

from __future__ import annotations

import hashlib

from sandbox_helpers import PHONE, Api, api, clock, sandbox

from qes_async import make_pdf
from qes_async.sandbox import SandboxServer

__all__ = ["api", "clock", "sandbox"]


async def test_happy_path_reaches_signed_with_the_documented_answers(
    api: Api, sandbox: SandboxServer
) -> None:
    pdf = make_pdf("Loan contract")
    sid = await api.create("alice")
    assert (await api.status(sid))["status"] == "pending"
    assert (await api.upload(sid, {"contract.pdf": pdf})).status == 204
    assert (await api.status(sid))["status"] == "pending"
    assert (await api.mobile(sid)).status == 204
    assert (await api.status(sid)) == {
        "signatureId": sid,
        "status": "user_consent_required",
        "statusCode": None,
        "errors": [],
    }
    details = (await api.details(sid)).json
    assert details["signatureId"] == sid
    assert details["mobileNumber"] == PHONE
    assert [d["sha256"] for d in details["documents"]] == [hashlib.sha256(pdf).hexdigest()]
    assert details["passcode"] == {"length": 6, "validitySeconds": 7200}
    approved = await api.approve(sid, details)
    assert approved.status == 200
    assert set(approved.json) == {"attemptId"}
    assert (await api.status(sid))["status"] == "confirmation_required"
    [sms] = sandbox.sms_outbox
    assert (sms.signature_id, sms.mobile_number) == (sid, PHONE)
    assert len(sms.passcode) == 6
    assert sms.passcode.isdigit()
    assert (await api.confirm(sid, sms.passcode)).status == 200
    assert (await api.status(sid))["status"] == "signed"
    assert [r.route for r in sandbox.request_log] == [
        "create_token",
        "create_workflow",
        "get_signature_status",
        "upload_documents",
        "get_signature_status",
        "upload_mobile_number",
        "get_signature_status",
        "get_signature_details",
        "approve_documents",
        "get_signature_status",
        "confirm_signature",
        "get_signature_status",
    ]
    assert [r.processed for r in sandbox.request_log if r.route != "get_signature_status"] == [
        True,
        True,
        True,
        True,
        False,
        True,
        True,
    ]
