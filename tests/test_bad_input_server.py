"""Bad input from the server: every malformed answer ends in a typed error or a clean retry.

Each case runs against a small loopback server (the ``fake_api`` fixture) that answers
badly: malformed JSON, wrong content types, missing fields, unknown statuses and error
codes, huge bodies, truncated multipart and PDF, a connection closed mid-download, an answer
that never comes. Every await is bounded by ``asyncio.wait_for`` (a hang fails the test) and,
for downloads, the destination folder is listed after the failure: it must be empty.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import FakeAPI

from qes_async import (
    BadRequestError,
    ConflictError,
    DecodeError,
    NotFoundError,
    OutcomeUnknownError,
    QESClient,
    QESError,
    RetryPolicy,
    ServerError,
    ServiceError,
    SignatureDetails,
    Status,
    Timeouts,
    make_pdf,
)
from qes_async._client.protocol import Response, parse_details

SIG = "sig-1"
GUARD = 10.0  # seconds: a hang guard, never reached by a healthy client
STATUS = "/v1/signatures/{id}/status"
DETAILS = "/v1/signatures/{id}/details"
WORKFLOWS = "/v1/workflows"
APPROVAL = "/v1/signatures/{id}/approval"
CONFIRMATION = "/v1/signatures/{id}/confirmation"
DOCUMENT = "/v1/signatures/{id}/documents/{doc}"
CONTRACT = "/v1/signatures/{id}/infocert-contract"
HUGE = 30 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer(body: bytes | str, ctype: str = "application/json", status: int = 200) -> Handler:
    """A handler that always gives this raw answer."""
    data = body.encode() if isinstance(body, str) else body

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, headers={"Content-Type": ctype})

    return handler


def cut_after(body: bytes, sent: int, ctype: str) -> Handler:
    """A handler that promises ``body`` and closes the connection after ``sent`` bytes."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": ctype})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:sent])
        assert request.transport is not None
        request.transport.close()
        return response

    return handler


async def never(request: web.Request) -> web.StreamResponse:
    """A handler that never answers."""
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


def details_value() -> SignatureDetails:
    body = {
        "signatureId": SIG,
        "documents": [{"documentId": "d-1", "fileName": "a.pdf", "sha256": "ab" * 32}],
        "legalConditions": [],
    }
    return parse_details(Response(200, body=json.dumps(body).encode()))


def client(api: FakeAPI) -> QESClient:
    """A client with short timeouts and three attempts, so failures come fast."""
    timeouts = Timeouts(connect=1.0, read=0.3, total=1.0, transfer_read=0.3)
    return api.client(timeouts=timeouts, retry=RetryPolicy(attempts=3, jitter=None))  # type: ignore[return-value]


CALLS: dict[str, tuple[str, str, Callable[[QESClient], Awaitable[Any]]]] = {
    "status": ("GET", STATUS, lambda c: c.get_signature_status(SIG)),
    "details": ("GET", DETAILS, lambda c: c.get_signature_details(SIG)),
    "create": ("POST", WORKFLOWS, lambda c: c.create_workflow("client-1")),
    "approve": ("POST", APPROVAL, lambda c: c.approve_documents(SIG, details_value())),
    "confirm": ("POST", CONFIRMATION, lambda c: c.confirm_signature(SIG, "123456")),
    "contract": ("GET", CONTRACT, lambda c: c.get_infocert_contract(SIG)),
}


async def call(api: FakeAPI, name: str, handler: Handler) -> Any:
    method, path, invoke = CALLS[name]
    api.add(method, path, handler)
    async with client(api) as qes:
        return await asyncio.wait_for(invoke(qes), GUARD)


# ------------------------------------------------------------------------- JSON answers

MALFORMED = [
    ("status", answer("{not json"), "not valid JSON"),
    ("status", answer(b"\xff\xfe\x00garbage"), "not valid JSON"),
    ("status", answer(""), "not valid JSON"),
    ("status", answer("<html>oops</html>", "text/html"), "not valid JSON"),
    ("status", answer("[]"), "expected a JSON object with signatureId, status"),
    ("status", answer('"pending"'), "expected a JSON object"),
    ("status", answer("null"), "expected a JSON object"),
    ("status", answer('{"status": "pending"}'), "signatureId"),
    ("status", answer('{"signatureId": "sig-1"}'), "status"),
    ("status", answer('{"signatureId": "sig-1", "status": ""}'), "status"),
    ("status", answer('{"signatureId": "sig-1", "status": {"a": 1}}'), "unexpected shape"),
    ("status", answer('{"signatureId": "sig-1", "status": true}'), "unexpected shape"),
    ("status", answer('{"signatureId": "sig-1", "status": "x", "statusCode": "a"}'), "shape"),
    ("status", answer('{"signatureId": "sig-1", "status": "x", "errors": 5}'), "shape"),
    ("status", answer('{"signatureId": ["a"], "status": "pending"}'), "unexpected shape"),
    ("details", answer("{"), "not valid JSON"),
    ("details", answer('{"documents": []}'), "signatureId"),
    ("details", answer('{"signatureId": "s", "documents": {"a": 1}}'), "unexpected shape"),
    ("details", answer('{"signatureId": "s", "documents": [{"x": 1}]}'), "unexpected shape"),
    ("create", answer("{}", status=201), "workflowId"),
    ("create", answer("created!", "text/plain", 201), "not valid JSON"),
    ("create", answer('{"workflowId": {"id": "w"}}', status=201), "unexpected shape"),
    ("create", answer('{"workflowId": "w", "clientId": ["c"]}', status=201), "unexpected shape"),
    ("approve", answer("{oops"), "not valid JSON"),
    ("approve", answer("[1, 2]"), "expected a JSON object"),
    ("confirm", answer('{"attemptId": {"nested": true}}'), "unexpected shape"),
    ("contract", answer("not a pdf", "application/pdf"), "not a PDF"),
    ("contract", answer('{"pdf": "here"}'), "not a PDF"),
]


@pytest.mark.parametrize(("name", "handler", "fragment"), MALFORMED)
async def test_a_malformed_answer_raises_decode_error_without_a_retry(
    fake_api: FakeAPI, name: str, handler: Handler, fragment: str
) -> None:
    with pytest.raises(DecodeError) as info:
        await call(fake_api, name, handler)
    assert fragment in str(info.value)
    assert len(fake_api.calls) == 1  # a well-delivered bad answer would come back the same


async def test_an_unknown_status_is_kept_not_refused(fake_api: FakeAPI) -> None:
    body = '{"signatureId": "sig-1", "status": "quantum_entangled", "statusCode": 9999}'
    report = await call(fake_api, "status", answer(body))
    assert report.status == Status("quantum_entangled")
    assert not report.status.is_known
    assert report.status_code == 9999


async def test_unknown_fields_are_ignored(fake_api: FakeAPI) -> None:
    body = {"signatureId": SIG, "status": "pending", "future": {"deep": [1, 2, {"x": None}]}}
    report = await call(fake_api, "status", answer(json.dumps(body)))
    assert (report.signature_id, report.status) == (SIG, Status.PENDING)


async def test_a_huge_json_answer_is_refused_not_read_whole(fake_api: FakeAPI) -> None:
    body = json.dumps({"signatureId": SIG, "status": "signed", "padding": "x" * HUGE})
    with pytest.raises(DecodeError, match="larger than"):
        await call(fake_api, "status", answer(body))


async def test_a_huge_garbage_answer_gives_a_short_error_message(fake_api: FakeAPI) -> None:
    with pytest.raises(DecodeError) as info:
        await call(fake_api, "details", answer(b"<" * HUGE, "text/html"))
    assert len(str(info.value)) < 1_000


# ------------------------------------------------------------------------ error answers

ERRORS = [
    # (call, status, body, error type, calls made)
    ("status", 400, '{"code": "brand_new_code", "message": "m"}', BadRequestError, 1),
    ("status", 404, "<html>Not Found</html>", NotFoundError, 1),
    ("status", 418, '{"code": "teapot"}', ServiceError, 1),
    ("status", 500, "<html>boom</html>", ServerError, 3),
    ("status", 503, "", ServerError, 3),
    ("status", 599, '{"code": 12, "message": ["not", "text"]}', ServerError, 3),
    ("confirm", 409, "{broken", ConflictError, 1),
    ("confirm", 409, '{"code": "wrong_passcode", "attemptsLeft": "two"}', ConflictError, 1),
    # a 5xx to an unsafe call: it may have been processed, so the outcome is unknown
    ("approve", 500, '{"code": "server_error"}', OutcomeUnknownError, 1),
    ("create", 502, "bad gateway", OutcomeUnknownError, 1),
    ("details", 400, '{"errors": "not a list", "code": null}', BadRequestError, 1),
    ("details", 400, '{"errors": [1, "x", {"code": 5}, {"field": {}}]}', BadRequestError, 1),
]


@pytest.mark.parametrize(("name", "status", "body", "kind", "calls"), ERRORS)
async def test_an_error_answer_raises_its_typed_error(
    fake_api: FakeAPI, name: str, status: int, body: str, kind: type[QESError], calls: int
) -> None:
    with pytest.raises(kind) as info:
        await call(fake_api, name, answer(body, status=status))
    assert type(info.value) is kind
    assert f"HTTP {status}" in str(info.value)
    assert len(fake_api.calls) == calls  # only a safe call is retried after a 5xx


async def test_an_unknown_error_code_is_kept_on_the_error(fake_api: FakeAPI) -> None:
    with pytest.raises(BadRequestError) as info:
        await call(fake_api, "status", answer('{"code": "brand_new_code"}', status=400))
    assert info.value.code == "brand_new_code"


async def test_a_huge_error_body_gives_a_short_error_message(fake_api: FakeAPI) -> None:
    body = json.dumps({"code": "x", "message": "m" * HUGE})
    with pytest.raises(BadRequestError) as info:
        await call(fake_api, "details", answer(body, status=400))
    assert len(str(info.value)) < 1_000


# ------------------------------------------------------------- cut and missing answers


async def test_a_json_answer_cut_short_is_retried_for_a_safe_call(fake_api: FakeAPI) -> None:
    body = json.dumps({"signatureId": SIG, "status": "pending"}).encode()
    answers = [cut_after(body, 10, "application/json"), answer(body)]
    report = await call(fake_api, "status", lambda request: answers.pop(0)(request))
    assert report.status == Status.PENDING
    assert len(fake_api.calls) == 2


async def test_a_json_answer_cut_short_is_an_unknown_outcome_for_an_unsafe_call(
    fake_api: FakeAPI,
) -> None:
    body = json.dumps({"attemptId": "a-1"}).encode()
    with pytest.raises(OutcomeUnknownError):
        await call(fake_api, "confirm", cut_after(body, 5, "application/json"))
    assert len(fake_api.calls) == 1  # never replayed: the confirmation may have happened


@pytest.mark.parametrize("name", ["status", "approve"])
async def test_an_answer_that_never_comes_ends_in_outcome_unknown(
    fake_api: FakeAPI, name: str
) -> None:
    with pytest.raises(OutcomeUnknownError):
        await call(fake_api, name, never)
    assert len(fake_api.calls) == (3 if name == "status" else 1)


async def test_a_contract_cut_mid_body_is_retried_then_given_whole(fake_api: FakeAPI) -> None:
    pdf = make_pdf("contract", padding=50_000)
    answers = [cut_after(pdf, 20_000, "application/pdf"), answer(pdf, "application/pdf")]
    assert await call(fake_api, "contract", lambda request: answers.pop(0)(request)) == pdf


async def test_a_truncated_contract_is_refused(fake_api: FakeAPI) -> None:
    truncated = make_pdf("contract", padding=5_000)[:-300]
    with pytest.raises(DecodeError) as info:
        await call(fake_api, "contract", answer(truncated, "application/pdf"))
    assert "truncated" in str(info.value)


# --------------------------------------------------------------------------- downloads


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary", close: bool = True):  # type: ignore[no-untyped-def]
    """A multipart/mixed body and its content type, optionally without the closing line."""
    chunks = []
    for ctype, data in parts:
        head = f"--{boundary}\r\nContent-Type: {ctype}\r\n"
        if ctype == "application/pdf":
            head += 'Content-Disposition: attachment; filename="signed.pdf"\r\n'
        chunks.append(head.encode() + b"\r\n" + data + b"\r\n")
    body = b"".join(chunks) + (f"--{boundary}--\r\n".encode() if close else b"")
    return body, f"multipart/mixed; boundary={boundary}"


PDF = make_pdf("signed", padding=20_000)
BAD_DOWNLOADS = [
    ("text only", *multipart([("text/plain", b"signed")]), "no PDF"),
    ("pdf cut", *multipart([("application/pdf", PDF[:-500])]), "truncated"),
    ("no closing", *multipart([("application/pdf", PDF)], close=False), "truncated"),
    ("not a pdf", *multipart([("application/pdf", b"<html>")]), "does not start with %PDF-"),
    ("no boundary", b"--x\r\n\r\n", "multipart/mixed", "no boundary"),
    ("garbage", b"\x00" * 1000, "multipart/mixed; boundary=zz", "truncated"),
    ("empty pdf", b"", "application/pdf", "no PDF"),
    ("bare cut", PDF[: len(PDF) // 2], "application/pdf", "truncated"),
    ("html", b"<html>signed!</html>", "text/html", "expected multipart/mixed"),
    ("json", b'{"document": "base64..."}', "application/json", "expected multipart/mixed"),
    ("no type", PDF, "", "expected multipart/mixed"),
]


@pytest.mark.parametrize(
    ("case", "body", "ctype", "fragment"), BAD_DOWNLOADS, ids=[c[0] for c in BAD_DOWNLOADS]
)
async def test_a_bad_download_raises_decode_error_and_leaves_the_folder_empty(
    fake_api: FakeAPI, tmp_path: Path, case: str, body: bytes, ctype: str, fragment: str
) -> None:
    fake_api.add("GET", DOCUMENT, answer(body, ctype))
    async with client(fake_api) as qes:
        with pytest.raises(DecodeError) as info:
            await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
    assert fragment in str(info.value)
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ctype", ["application/pdf", "multipart/mixed; boundary=b0undary"])
async def test_a_download_closed_mid_body_every_time_fails_typed_and_leaves_no_file(
    fake_api: FakeAPI, tmp_path: Path, ctype: str
) -> None:
    body = PDF if ctype == "application/pdf" else multipart([("application/pdf", PDF)])[0]
    fake_api.add("GET", DOCUMENT, cut_after(body, len(body) // 2, ctype))
    async with client(fake_api) as qes:
        with pytest.raises(OutcomeUnknownError):
            await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
    assert sorted(tmp_path.iterdir()) == []
    assert len(fake_api.calls) == 3  # a download is safe to repeat


async def test_a_download_that_stalls_mid_body_times_out_and_leaves_no_file(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = len(PDF)
        await response.prepare(request)
        await response.write(PDF[:1000])
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    fake_api.add("GET", DOCUMENT, stall)
    async with client(fake_api) as qes:
        with pytest.raises(OutcomeUnknownError):
            await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
    assert sorted(tmp_path.iterdir()) == []


async def test_a_download_that_keeps_moving_is_not_cut_off(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    """The per-read bound (0.3 s here) is per wait, not for the whole body: pieces 0.1 s
    apart for 0.6 s in all arrive whole."""
    pieces = [PDF[i : i + 4000] for i in range(0, len(PDF), 4000)]

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = len(PDF)
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.6 / len(pieces))
        return response

    fake_api.add("GET", DOCUMENT, trickle)
    async with client(fake_api) as qes:
        signed = await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
        # The connection goes on with the ordinary bound: a stalled call still fails.
        fake_api.add("GET", STATUS, never)
        with pytest.raises(OutcomeUnknownError):
            await asyncio.wait_for(qes.get_signature_status(SIG), GUARD)
    assert signed.path.read_bytes() == PDF
    assert len(fake_api.calls) == 1 + 3  # the download once, the status read three times


async def test_a_download_cut_once_is_retried_and_leaves_only_the_document(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    body, ctype = multipart([("text/plain", b"done"), ("application/pdf", PDF)])
    answers = [cut_after(body, len(body) - 100, ctype), answer(body, ctype)]
    fake_api.add("GET", DOCUMENT, lambda request: answers.pop(0)(request))
    async with client(fake_api) as qes:
        signed = await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
    assert [p.name for p in tmp_path.iterdir()] == ["signed.pdf"]
    assert signed.path.read_bytes() == PDF


async def test_an_existing_document_survives_a_failed_download(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    (tmp_path / "signed.pdf").write_bytes(PDF)
    body, ctype = multipart([("application/pdf", PDF[:-500])])
    fake_api.add("GET", DOCUMENT, answer(body, ctype))
    async with client(fake_api) as qes:
        with pytest.raises(DecodeError):
            await asyncio.wait_for(qes.download_signed_document(SIG, "d-1", tmp_path), GUARD)
    assert [p.name for p in tmp_path.iterdir()] == ["signed.pdf"]
    assert (tmp_path / "signed.pdf").read_bytes() == PDF
