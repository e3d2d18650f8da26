"""Every endpoint's success path against a loopback server that checks the exact wire shape."""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import CLIENT_ID, CLIENT_SECRET, PARAMS, FakeAPI

from qes_async import (
    Attempt,
    Document,
    DocumentInfo,
    LegalCondition,
    QESClient,
    Status,
    StatusReport,
    Workflow,
    make_pdf,
)
from qes_async._client.documents import CHUNK_SIZE

SIG = "sig-1"
DETAILS = {
    "signatureId": SIG,
    "clientId": "c-1",
    "verificationId": "v-1",
    "mobileNumber": "+31612345678",
    "documents": [
        {"documentId": "d-1", "fileName": "a.pdf", "displayName": "A", "sha256": "ab" * 32},
        {"documentId": "d-2", "fileName": "b.pdf", "displayName": "B", "sha256": "cd" * 32},
    ],
    "legalConditions": [{"id": "lc-1", "version": 3, "title": "T", "url": "https://x/t"}],
    "passcode": {"length": 6, "validitySeconds": 7200},
    "somethingNew": {"ignored": True},
}


@contextlib.contextmanager
def quiet_multipart() -> Iterator[None]:
    """aiohttp's server-side multipart reader warns (DeprecationWarning) on parts without
    Content-Length, which our streamed parts are; that warning is aiohttp's, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def auth_ok(request: web.Request) -> None:
    assert request.headers["Authorization"].startswith("Bearer tok-ACCESS-")


async def test_token_request_has_the_documented_shape(fake_api: FakeAPI) -> None:
    seen: dict[str, object] = {}

    async def token(request: web.Request) -> web.Response:
        seen["headers"] = dict(request.headers)
        seen["body"] = await request.json()
        return web.json_response({"access_token": "tok-ACCESS-0001"})

    fake_api.token_handler = token
    fake_api.add(
        "GET",
        "/v1/signatures/{id}/status",
        lambda r: web.json_response({"signatureId": SIG, "status": "new"}),
    )
    async with fake_api.client() as client:
        await client.get_signature_status(SIG)
    assert seen["body"] == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["Cache-Control"] == "no-cache"


async def test_create_workflow(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        auth_ok(request)
        assert await request.json() == {"workflowName": "qes", "clientReference": "cust-9"}
        return web.json_response(
            {"workflowId": "w-1", "clientId": "c-1"}, status=201, headers={"X-Request-Id": "r-1"}
        )

    fake_api.add("POST", "/v1/workflows", handler)
    async with fake_api.client() as client:
        workflow = await client.create_workflow("cust-9")
    assert workflow == Workflow(workflow_id="w-1", client_id="c-1")
    assert workflow.request_id == "r-1"
    assert workflow.signature_id == "w-1"


async def test_upload_documents_sends_the_exact_multipart_shape(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    first, second = make_pdf("one"), make_pdf("two", padding=300_000)
    (tmp_path / "b.pdf").write_bytes(second)
    seen: list[tuple[dict[str, str], bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        auth_ok(request)
        assert request.content_type == "multipart/form-data"
        with quiet_multipart():
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                seen.append((dict(part.headers), await part.read()))
        return web.Response(status=204)

    fake_api.add("POST", "/v1/signatures/{id}/documents", handler)
    docs = [
        Document.from_bytes("a.pdf", first, display_name="Loan contract"),
        Document.from_path(tmp_path / "b.pdf"),
    ]
    async with fake_api.client() as client:
        assert await client.upload_documents(SIG, docs) is None
    assert [h["Content-Disposition"] for h, _ in seen] == [
        'form-data; name="metadata"',
        'form-data; name="file"; filename="a.pdf"',
        'form-data; name="file"; filename="b.pdf"',
    ]
    assert [h["Content-Type"] for h, _ in seen] == [
        "application/json",
        "application/pdf",
        "application/pdf",
    ]
    assert json.loads(seen[0][1]) == {
        "documents": [
            {"fileName": "a.pdf", "displayName": "Loan contract"},
            {"fileName": "b.pdf", "displayName": "b.pdf"},
        ]
    }
    assert seen[1][1] == first
    assert seen[2][1] == second
    assert fake_api.calls == [("POST", f"/v1/signatures/{SIG}/documents")]


@pytest.mark.parametrize(
    ("kind", "chunked"),
    [
        ("small in memory", False),  # one chunk's bytes: sent with their length
        ("large in memory", True),  # more than a chunk: streamed, as before
        ("small file", True),  # a file may change after its size was read: streamed
        ("small in memory and a file", True),
    ],
)
async def test_an_upload_declares_its_length_only_for_small_in_memory_documents(
    fake_api: FakeAPI, tmp_path: Path, kind: str, chunked: bool
) -> None:
    small, large = make_pdf("one"), make_pdf("two", padding=CHUNK_SIZE)
    (tmp_path / "f.pdf").write_bytes(small)
    docs = {
        "small in memory": [Document.from_bytes("a.pdf", small)],
        "large in memory": [Document.from_bytes("a.pdf", large)],
        "small file": [Document.from_path(tmp_path / "f.pdf")],
        "small in memory and a file": [
            Document.from_bytes("a.pdf", small),
            Document.from_path(tmp_path / "f.pdf"),
        ],
    }[kind]
    seen: list[bytes] = []
    framing: list[tuple[str | None, int | None]] = []

    async def handler(request: web.Request) -> web.Response:
        auth_ok(request)
        framing.append((request.headers.get("Transfer-Encoding"), request.content_length))
        with quiet_multipart():
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                seen.append(await part.read())
        return web.Response(status=204)

    fake_api.add("POST", "/v1/signatures/{id}/documents", handler)
    async with fake_api.client() as client:
        await client.upload_documents(SIG, docs)
    encoding, length = framing[0]
    assert (encoding == "chunked") is chunked
    assert (length is None) is chunked
    expected = {"small in memory": [small], "large in memory": [large], "small file": [small]}
    assert seen[1:] == expected.get(kind, [small, small])


async def test_upload_mobile_number(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        auth_ok(request)
        assert await request.json() == {"mobileNumber": "+31612345678"}
        return web.Response(status=204)

    fake_api.add("PUT", "/v1/signatures/{id}/mobile-number", handler)
    async with fake_api.client() as client:
        assert await client.upload_mobile_number(SIG, "+31612345678") is None
    assert fake_api.calls == [("PUT", f"/v1/signatures/{SIG}/mobile-number")]


async def test_upload_selfie(fake_api: FakeAPI) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"selfie" * 10
    seen: list[tuple[str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        with quiet_multipart():
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                seen.append((part.name or "", part.headers["Content-Type"], await part.read()))
        return web.Response(status=204)

    fake_api.add("POST", "/v1/signatures/{id}/selfie", handler)
    async with fake_api.client() as client:
        await client.upload_selfie(SIG, jpeg)
    assert seen == [("selfie", "image/jpeg", jpeg)]


async def test_get_signature_details_parses_and_passes_language(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.query["language"] == "de"
        return web.json_response(DETAILS, headers={"X-Request-Id": "r-2"})

    fake_api.add("GET", "/v1/signatures/{id}/details", handler)
    async with fake_api.client() as client:
        details = await client.get_signature_details(SIG, language="de")
    assert details.documents == (
        DocumentInfo("d-1", "a.pdf", "A", "ab" * 32),
        DocumentInfo("d-2", "b.pdf", "B", "cd" * 32),
    )
    assert details.legal_conditions == (LegalCondition("lc-1", 3, "T", "https://x/t"),)
    assert details.passcode is not None
    assert details.passcode.validity_seconds == 7200
    assert details.request_id == "r-2"
    assert "+31612345678" not in repr(details)


async def test_get_signature_details_without_language_sends_no_query(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert dict(request.query) == {}
        return web.json_response(DETAILS)

    fake_api.add("GET", "/v1/signatures/{id}/details", handler)
    async with fake_api.client() as client:
        await client.get_signature_details(SIG)


async def test_approve_documents_lists_every_document_and_condition(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert await request.json() == {
            "approvedDocuments": [
                {"documentId": "d-1", "sha256": "ab" * 32},
                {"documentId": "d-2", "sha256": "cd" * 32},
            ],
            "acceptedLegalConditions": [{"id": "lc-1", "version": 3}],
            "passcodeLanguage": "en",
        }
        return web.json_response({"attemptId": "att-1"})

    fake_api.add("GET", "/v1/signatures/{id}/details", lambda r: web.json_response(DETAILS))
    fake_api.add("POST", "/v1/signatures/{id}/approval", handler)
    async with fake_api.client() as client:
        details = await client.get_signature_details(SIG)
        attempt = await client.approve_documents(SIG, details, passcode_language="en")
    assert attempt == Attempt("att-1")


async def test_confirm_signature(fake_api: FakeAPI) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert await request.json() == {"passcode": "123456"}
        return web.json_response({"attemptId": "att-2"})

    fake_api.add("POST", "/v1/signatures/{id}/confirmation", handler)
    async with fake_api.client() as client:
        assert await client.confirm_signature(SIG, "123456") == Attempt("att-2")


async def test_get_signature_status_keeps_unknown_status(fake_api: FakeAPI) -> None:
    body = {"signatureId": SIG, "status": "brand_new_state", "statusCode": None, "errors": []}
    fake_api.add("GET", "/v1/signatures/{id}/status", lambda r: web.json_response(body))
    async with fake_api.client() as client:
        report = await client.get_signature_status(SIG)
    assert report == StatusReport(SIG, Status("brand_new_state"))
    assert report.status.value == "brand_new_state"
    assert not report.status.is_known


async def test_download_signed_document_multipart(fake_api: FakeAPI, tmp_path: Path) -> None:
    pdf = make_pdf("signed")

    async def handler(request: web.Request) -> web.Response:
        assert request[PARAMS]["doc"] == "d-1"
        writer = aiohttp.MultipartWriter("mixed")
        writer.append("Your document was signed.", {"Content-Type": "text/plain"})
        part = writer.append(pdf, {"Content-Type": "application/pdf"})
        part.set_content_disposition("attachment", filename="signed-a.pdf")
        return web.Response(body=writer)

    fake_api.add("GET", "/v1/signatures/{id}/documents/{doc}", handler)
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", tmp_path)
    assert signed.path == tmp_path / "signed-a.pdf"
    assert signed.path.read_bytes() == pdf
    assert signed.sha256 == hashlib.sha256(pdf).hexdigest()
    assert signed.size == len(pdf)
    assert signed.message == "Your document was signed."
    assert stat.S_IMODE(signed.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signed-a.pdf"]


async def test_download_signed_document_bare_pdf(fake_api: FakeAPI, tmp_path: Path) -> None:
    pdf = make_pdf("bare")
    fake_api.add(
        "GET",
        "/v1/signatures/{id}/documents/{doc}",
        lambda r: web.Response(body=pdf, content_type="application/pdf"),
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-7", str(tmp_path))
    assert signed.path == tmp_path / "d-7.pdf"
    assert signed.path.read_bytes() == pdf
    assert signed.message is None


async def test_get_infocert_contract_pdf_and_204(fake_api: FakeAPI) -> None:
    pdf = make_pdf("contract")
    answers = [web.Response(body=pdf, content_type="application/pdf"), web.Response(status=204)]
    fake_api.add("GET", "/v1/signatures/{id}/infocert-contract", lambda r: answers.pop(0))
    async with fake_api.client() as client:
        assert await client.get_infocert_contract(SIG) == pdf
        assert await client.get_infocert_contract(SIG) is None


async def test_routes_can_be_overridden(fake_api: FakeAPI) -> None:
    fake_api.add(
        "GET",
        "/v2/sig/{id}/state",
        lambda r: web.json_response({"signatureId": r[PARAMS]["id"], "status": "pending"}),
    )
    async with fake_api.client(routes={"get_signature_status": "/v2/sig/{id}/state"}) as client:
        report = await client.get_signature_status("a b/c".replace(" ", "").replace("/", "-"))
    assert report.status is Status.PENDING
    assert fake_api.calls == [("GET", "/v2/sig/ab-c/state")]


async def test_environment_names_pick_the_documented_base_urls() -> None:
    sandbox = QESClient("id", "secret", environment="sandbox")
    production = QESClient("id", "secret", environment="production")
    assert sandbox.base_url == "https://api.ext-sandbox.fourthline.com"
    assert production.base_url == "https://api.fourthline.com"
    await sandbox.aclose()
    await production.aclose()


@pytest.mark.parametrize("secret", ["s3cr3t-value-xyz"])
async def test_client_repr_hides_the_secret(secret: str) -> None:
    client = QESClient("my-id", secret, base_url="http://127.0.0.1:1")
    assert secret not in repr(client)
    assert "my-id" in repr(client)
    await client.aclose()
