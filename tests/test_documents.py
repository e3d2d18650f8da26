"""Documents: input checks, streaming uploads and downloads, safe file names."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import pytest
from aiohttp import web
from conftest import FakeAPI, register_secret

from qes_async import DecodeError, Document, InvalidInputError, make_pdf
from qes_async._client.download import safe_file_name

SIG = "sig-1"
DOC_PATH = "/v1/signatures/{id}/documents/{doc}"
BIG = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def big_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.pdf"
    path.write_bytes(make_pdf("big", padding=BIG))
    return path


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("docs", "fragment"),
    [
        ([], "non-empty sequence"),
        ([Document.from_bytes("a.pdf", b"")], "is empty"),
        ([Document.from_bytes("a.pdf", b"hello world")], "is not a PDF"),
        (
            [Document.from_bytes("a.pdf", make_pdf()), Document.from_bytes("a.pdf", make_pdf())],
            "appears twice",
        ),
        ([Document.from_bytes("a.pdf", make_pdf(padding=2000))], "more than the limit of 1.0 kB"),
    ],
)
async def test_bad_documents_are_refused_before_any_request(
    fake_api: FakeAPI, docs: list[Document], fragment: str
) -> None:
    async with fake_api.client(max_document_size=1000) as client:
        with pytest.raises(InvalidInputError) as info:
            await client.upload_documents(SIG, docs)
    assert fragment in str(info.value)
    assert info.value.field == "documents"
    assert fake_api.tokens_issued == 0


@pytest.mark.parametrize("name", ["../a.pdf", "dir/a.pdf", "c:\\x\\a.pdf", "..", "", "a\x00.pdf"])
def test_file_names_with_path_parts_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Document.from_bytes(name, make_pdf())
    assert info.value.field == "file_name"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        Document.from_path(tmp_path / "nope.pdf")
    assert info.value.field == "path"


async def test_document_repr_never_shows_bytes_and_sha256_is_cached(tmp_path: Path) -> None:
    data = make_pdf("secret contract text")
    doc = Document.from_bytes("a.pdf", data, display_name="Loan")
    size = len(data)
    assert repr(doc) == f"Document(file_name='a.pdf', display_name='Loan', size={size}, in memory)"
    import hashlib

    assert await doc.sha256() == hashlib.sha256(data).hexdigest()
    (tmp_path / "b.pdf").write_bytes(data)
    on_disk = Document.from_path(tmp_path / "b.pdf")
    assert await on_disk.sha256() == await doc.sha256()
    (tmp_path / "b.pdf").write_bytes(b"changed")
    assert await on_disk.sha256() == await doc.sha256()  # cached


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mobile_number": "0698765432"}, "mobile_number"),
        ({"mobile_number": "+31 6 9876 5432"}, "mobile_number"),
        ({"mobile_number": "+0698765432"}, "mobile_number"),
    ],
)
async def test_mobile_number_must_be_e164(
    fake_api: FakeAPI, kwargs: dict[str, str], field: str
) -> None:
    register_secret("98765432")
    async with fake_api.client() as client:
        with pytest.raises(InvalidInputError) as info:
            await client.upload_mobile_number(SIG, **kwargs)
    assert info.value.field == field
    assert "98765432" not in str(info.value)
    assert fake_api.tokens_issued == 0


@pytest.mark.parametrize("passcode", ["12a456", "", " 123456", "12", 123456])
async def test_passcode_must_be_digits(fake_api: FakeAPI, passcode: object) -> None:
    async with fake_api.client() as client:
        with pytest.raises(InvalidInputError) as info:
            await client.confirm_signature(SIG, passcode)  # type: ignore[arg-type]
    assert info.value.field == "passcode"
    assert len(str(passcode)) < 4 or str(passcode).strip() not in str(info.value)
    assert fake_api.tokens_issued == 0


# ---------------------------------------------------------------------------- streaming


async def test_50mb_upload_streams_from_disk(fake_api: FakeAPI, big_pdf: Path) -> None:
    received = {"bytes": 0, "max_chunk": 0}

    async def sink(request: web.Request) -> web.Response:
        async for chunk in request.content.iter_any():
            received["bytes"] += len(chunk)
            received["max_chunk"] = max(received["max_chunk"], len(chunk))
        return web.Response(status=204)

    fake_api.add("POST", "/v1/signatures/{id}/documents", sink)
    doc = Document.from_path(big_pdf)
    async with fake_api.client(max_document_size=BIG * 2) as client:
        tracemalloc.start()
        try:
            await client.upload_documents(SIG, [doc])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received["bytes"] > doc.size  # the whole file plus multipart framing arrived
    assert peak < 8 * 1024 * 1024  # never held whole (the file is 50 MB)


async def test_50mb_download_streams_to_disk(
    fake_api: FakeAPI, big_pdf: Path, tmp_path: Path
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await response.prepare(request)
        with big_pdf.open("rb") as handle:
            while chunk := handle.read(256 * 1024):
                await response.write(chunk)
        await response.write_eof()
        return response

    fake_api.add("GET", DOC_PATH, stream)
    async with fake_api.client() as client:
        tracemalloc.start()
        try:
            signed = await client.download_signed_document(SIG, "d-1", tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert signed.size == big_pdf.stat().st_size
    assert signed.path.read_bytes() == big_pdf.read_bytes()
    assert peak < 8 * 1024 * 1024


def multipart_body(pdf: bytes, filename: str, *, close: bool = True) -> tuple[bytes, str]:
    boundary = "xYzBoundary"
    body = (
        (
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nSigned.\r\n"
            f"--{boundary}\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n'
        ).encode()
        + pdf
        + f"\r\n--{boundary}{'--' if close else ''}\r\n".encode()
    )
    return body, f"multipart/mixed; boundary={boundary}"


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("../../escape.pdf", "escape.pdf"),
        ("/etc/passwd", "passwd.pdf"),
        ("..\\..\\win.pdf", "win.pdf"),
        ("..", "d-1.pdf"),
        ("", "d-1.pdf"),
    ],
)
async def test_server_file_names_never_escape_the_destination(
    fake_api: FakeAPI, tmp_path: Path, server_name: str, expected: str
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    body, ctype = multipart_body(make_pdf(), server_name)
    fake_api.add(
        "GET", DOC_PATH, lambda r: web.Response(body=body, headers={"Content-Type": ctype})
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", dest)
    assert signed.path == dest / expected
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["out", expected])


@pytest.mark.parametrize(
    ("body", "ctype", "fragment"),
    [
        (b"not a pdf at all", "application/pdf", "does not start with %PDF-"),
        (make_pdf()[:-200], "application/pdf", "truncated"),
        (*multipart_body(make_pdf(), "a.pdf", close=False), "truncated"),
        (b"{}", "application/json", "expected multipart/mixed or application/pdf"),
    ],
)
async def test_a_bad_download_leaves_no_file(
    fake_api: FakeAPI, tmp_path: Path, body: bytes, ctype: str, fragment: str
) -> None:
    fake_api.add(
        "GET", DOC_PATH, lambda r: web.Response(body=body, headers={"Content-Type": ctype})
    )
    async with fake_api.client() as client:
        with pytest.raises(DecodeError) as info:
            await client.download_signed_document(SIG, "d-1", tmp_path)
    assert fragment in str(info.value)
    assert body[-40:].decode(errors="replace") not in str(info.value)  # no document bytes
    assert list(tmp_path.iterdir()) == []
    assert len(fake_api.calls) == 1  # a bad body is not retried


async def test_a_dropped_download_is_retried_and_leaves_no_partial_file(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    pdf = make_pdf(padding=300_000)
    tries = {"n": 0}

    async def flaky(request: web.Request) -> web.StreamResponse:
        tries["n"] += 1
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = len(pdf)
        await response.prepare(request)
        if tries["n"] == 1:
            await response.write(pdf[:100_000])
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.01)
            return response
        await response.write(pdf)
        return response

    fake_api.add("GET", DOC_PATH, flaky)
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", tmp_path)
    assert tries["n"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["d-1.pdf"]
    assert signed.path.read_bytes() == pdf


def test_safe_file_name_table() -> None:
    assert safe_file_name("report", "d") == "report.pdf"
    assert safe_file_name(".hidden.pdf", "d") == "hidden.pdf"
    assert safe_file_name(None, "../x") == "x.pdf"
    assert safe_file_name(None, "") == "document.pdf"
