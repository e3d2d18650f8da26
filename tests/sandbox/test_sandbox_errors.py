"""Tokens, strict input checking and every error code, with the contract's error body."""

from __future__ import annotations

import aiohttp
import pytest
from sandbox_helpers import Api, api, approval, clock, documents_form, sandbox

from qes_async import FakeClock, make_pdf
from qes_async.sandbox import SandboxServer

__all__ = ["api", "clock", "sandbox"]
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def assert_error(answer: object, status: int, code: str) -> None:
    assert (answer.status, answer.json["code"]) == (status, code), answer  # type: ignore[attr-defined]
    assert isinstance(answer.json["message"], str)  # type: ignore[attr-defined]
    assert isinstance(answer.json["errors"], list)  # type: ignore[attr-defined]
    assert answer.headers["X-Request-Id"]  # type: ignore[attr-defined]


async def test_token_with_wrong_secret_is_401(api: Api, sandbox: SandboxServer) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": sandbox.client_id,
        "client_secret": "x",
    }
    assert_error(
        await api.call("POST", "/v1/oauth2/token", json=body, auth=False), 401, "invalid_client"
    )


async def test_token_answer_is_bearer_for_an_hour(api: Api, sandbox: SandboxServer) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
    }
    answer = await api.call("POST", "/v1/oauth2/token", json=body, auth=False)
    assert (answer.json["token_type"], answer.json["expires_in"]) == ("Bearer", 3600)


async def test_token_with_other_grant_is_400(api: Api, sandbox: SandboxServer) -> None:
    body = {"grant_type": "password", "client_id": sandbox.client_id, "client_secret": "x"}
    answer = await api.call("POST", "/v1/oauth2/token", json=body, auth=False)
    assert_error(answer, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, "missing_token"), ("Bearer nope", "invalid_token"), ("Basic abc", "missing_token")],
)
async def test_calls_without_a_valid_token_are_401(api: Api, header: str | None, code: str) -> None:
    headers = {"Authorization": header} if header else {}
    answer = await api.call(
        "GET", f"/v1/signatures/{UNKNOWN}/status", headers=headers, auth=header is not None
    )
    assert_error(answer, 401, code)


async def test_expired_token_is_401(api: Api, clock: FakeClock) -> None:
    token = await api.new_token()
    headers = {"Authorization": f"Bearer {token}"}
    clock.advance(3599)
    assert (
        await api.call("GET", f"/v1/signatures/{UNKNOWN}/status", headers=headers)
    ).status == 404
    clock.advance(1)
    answer = await api.call("GET", f"/v1/signatures/{UNKNOWN}/status", headers=headers)
    assert_error(answer, 401, "token_expired")


async def test_revoked_token_is_401(api: Api, sandbox: SandboxServer) -> None:
    await api.create()
    sandbox.revoke_tokens()
    answer = await api.call(
        "POST", "/v1/workflows", json={"workflowName": "qes", "clientReference": "c"}
    )
    assert_error(answer, 401, "invalid_token")


async def test_unknown_signature_is_404(api: Api) -> None:
    assert_error(
        await api.call("GET", f"/v1/signatures/{UNKNOWN}/details"), 404, "signature_not_found"
    )


async def test_unknown_document_is_404(api: Api) -> None:
    sid = await api.to_signed()
    answer = await api.call("GET", f"/v1/signatures/{sid}/documents/{UNKNOWN}")
    assert_error(answer, 404, "document_not_found")


async def test_unknown_path_and_method_are_4xx_with_the_error_body(api: Api) -> None:
    assert_error(await api.call("GET", "/v1/nothing"), 404, "not_found")
    assert_error(await api.call("DELETE", "/v1/workflows"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"clientReference": "c"}, "workflowName"),
        ({"workflowName": "other", "clientReference": "c"}, "workflowName"),
        ({"workflowName": "qes"}, "clientReference"),
        ({"workflowName": "qes", "clientReference": 5}, "clientReference"),
        ({"workflowName": "qes", "clientReference": ""}, "clientReference"),
    ],
)
async def test_create_workflow_checks_its_fields(
    api: Api, body: dict[str, object], field: str
) -> None:
    answer = await api.call("POST", "/v1/workflows", json=body)
    assert answer.status == 400
    assert answer.json["errors"][0]["field"] == field


async def test_json_endpoints_refuse_other_content_types(api: Api) -> None:
    answer = await api.call("POST", "/v1/workflows", data=b"workflowName=qes")
    assert_error(answer, 400, "invalid_content_type")
    answer = await api.call(
        "POST", "/v1/workflows", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, "invalid_json")


@pytest.mark.parametrize("number", ["0612345678", "+0612345678", "+31 612345678", "+3161", ""])
async def test_mobile_number_must_be_e164(api: Api, number: str) -> None:
    sid = await api.create()
    await api.upload(sid)
    assert_error(await api.mobile(sid, number), 400, "invalid_field")


async def test_mobile_number_before_documents_is_409(api: Api) -> None:
    sid = await api.create()
    assert_error(await api.mobile(sid), 409, "documents_missing")


async def test_upload_refuses_a_non_pdf(api: Api) -> None:
    sid = await api.create()
    assert_error(await api.upload(sid, {"a.pdf": b"GIF89a"}), 400, "invalid_document")


async def test_upload_refuses_files_before_metadata(api: Api) -> None:
    sid = await api.create()
    with aiohttp.MultipartWriter("form-data") as form:
        part = form.append(make_pdf(), {"Content-Type": "application/pdf"})
        part.set_content_disposition("form-data", name="file", filename="a.pdf")
    answer = await api.call("POST", f"/v1/signatures/{sid}/documents", data=form)
    assert_error(answer, 400, "invalid_multipart")


async def test_upload_refuses_a_count_mismatch(api: Api) -> None:
    sid = await api.create()
    form = documents_form({"a.pdf": make_pdf()})
    form._parts.pop()  # metadata names one document, no file part follows
    answer = await api.call("POST", f"/v1/signatures/{sid}/documents", data=form)
    assert_error(answer, 400, "invalid_multipart")


async def test_upload_after_pending_is_409(api: Api) -> None:
    sid = await api.to_consent()
    assert_error(await api.upload(sid), 409, "invalid_status")


async def test_approval_with_a_wrong_hash_is_document_mismatch(api: Api) -> None:
    sid = await api.to_consent()
    body = approval((await api.details(sid)).json)
    body["approvedDocuments"][0]["sha256"] = "0" * 64
    answer = await api.call("POST", f"/v1/signatures/{sid}/approval", json=body)
    assert_error(answer, 422, "document_mismatch")


async def test_approval_missing_a_condition_is_consent_incomplete(api: Api) -> None:
    sid = await api.to_consent()
    body = approval((await api.details(sid)).json)
    body["acceptedLegalConditions"].pop()
    answer = await api.call("POST", f"/v1/signatures/{sid}/approval", json=body)
    assert_error(answer, 422, "consent_incomplete")
    assert [e["code"] for e in answer.json["errors"]] == ["missing_condition"]


async def test_three_failed_approvals_spend_the_workflow(api: Api) -> None:
    sid = await api.to_consent()
    body = approval((await api.details(sid)).json)
    body["approvedDocuments"] = []
    codes = [
        (await api.call("POST", f"/v1/signatures/{sid}/approval", json=body)).json["code"]
        for _ in range(3)
    ]
    assert codes == ["consent_incomplete", "consent_incomplete", "too_many_attempts"]


async def test_second_approval_is_409(api: Api) -> None:
    sid = await api.to_confirmation()
    assert_error(await api.approve(sid), 409, "invalid_status")


async def test_confirmation_before_approval_is_409(api: Api) -> None:
    sid = await api.to_consent()
    assert_error(await api.confirm(sid, "123456"), 409, "invalid_status")


async def test_download_before_signed_is_409(api: Api) -> None:
    sid = await api.to_confirmation()
    answer = await api.call("GET", f"/v1/signatures/{sid}/documents/{UNKNOWN}")
    assert_error(answer, 409, "invalid_status")


async def test_details_language_must_be_a_code(api: Api) -> None:
    sid = await api.to_consent()
    answer = await api.call("GET", f"/v1/signatures/{sid}/details?language=english!")
    assert_error(answer, 400, "invalid_field")


async def test_no_500_was_answered(api: Api, sandbox: SandboxServer) -> None:
    await api.to_signed()
    assert all(r.status < 500 for r in sandbox.request_log)
