"""Threat model: a server that answers without bounds.

The client must not trust the size of what a server sends. This module defends against:

- an endless ``application/pdf`` download (no Content-Length) filling the disk;
- a download whose declared Content-Length is beyond ``max_download_size``;
- a gzip-compressed download that inflates past ``max_download_size`` (the bound counts
  decoded bytes, the ones that land on disk);
- a multipart download whose skipped parts never end (framing counts toward the bound);
- an ordinary (JSON) answer that is small compressed and huge inflated: the 16 MiB answer
  cap counts decoded bytes, not the compressed length;
- a JSON answer nested too deep to parse, which must be a typed error, not a
  ``RecursionError``.

The evidence is counted at the server (bytes it managed to write before the client hung
up) and on disk (no file, no temp file left), not from what the client says.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from aiohttp import web
from conftest import FakeAPI

from qes_async import DecodeError, make_pdf
from qes_async._client.client import DEFAULT_MAX_DOWNLOAD_SIZE

SIG = "sig-1"
DOC_PATH = "/v1/signatures/{id}/documents/{doc}"
STATUS_PATH = "/v1/signatures/{id}/status"
LIMIT = 1024 * 1024  # the tests' max_download_size: 1 MiB
CHUNK = 64 * 1024


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class _Endless:
    """An ``application/pdf`` body that never ends; counts what it managed to send."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"%PDF-1.7\n")
        try:
            while self.sent < 64 * LIMIT:  # a safety stop for the old code: 64 MiB
                await response.write(b"0" * CHUNK)
                self.sent += CHUNK
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what we want
        return response


async def test_an_endless_download_stops_at_max_download_size(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    endless = _Endless()
    fake_api.add("GET", DOC_PATH, endless)
    async with fake_api.client(max_download_size=LIMIT) as client:
        with pytest.raises(DecodeError, match="max_download_size"):
            await client.download_signed_document(SIG, "d-1", tmp_path)
    assert _files(tmp_path) == []  # no document, no temp file
    # The server could push at most the bound plus what sat in socket buffers.
    assert endless.sent < 16 * LIMIT, endless.sent


async def test_a_declared_length_over_the_bound_is_refused_before_writing(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    big = make_pdf(padding=2 * LIMIT)

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/pdf")

    fake_api.add("GET", DOC_PATH, declared)
    async with fake_api.client(max_download_size=LIMIT) as client:
        with pytest.raises(DecodeError, match="max_download_size"):
            await client.download_signed_document(SIG, "d-1", tmp_path)
    assert _files(tmp_path) == []


async def test_a_gzip_download_is_bounded_by_its_inflated_size(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    inflated = make_pdf(padding=4 * LIMIT)  # compresses to a few KB
    packed = gzip.compress(inflated)
    assert len(packed) < LIMIT // 8

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(
            body=packed, headers={"Content-Type": "application/pdf", "Content-Encoding": "gzip"}
        )

    fake_api.add("GET", DOC_PATH, bomb)
    async with fake_api.client(max_download_size=LIMIT) as client:
        with pytest.raises(DecodeError, match="max_download_size"):
            await client.download_signed_document(SIG, "d-1", tmp_path)
    assert _files(tmp_path) == []


async def test_endless_skipped_multipart_parts_are_bounded(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    sent = 0

    async def parts(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "multipart/mixed; boundary=xyz"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"--xyz\r\nContent-Type: application/octet-stream\r\n\r\n")
        try:
            while sent < 64 * LIMIT:
                await response.write(b"x" * CHUNK)  # a part the client skips, never ending
                sent += CHUNK
        except (ConnectionError, RuntimeError):
            pass
        return response

    fake_api.add("GET", DOC_PATH, parts)
    async with fake_api.client(max_download_size=LIMIT) as client:
        with pytest.raises(DecodeError, match="larger than"):
            await client.download_signed_document(SIG, "d-1", tmp_path)
    assert _files(tmp_path) == []
    assert sent < 16 * LIMIT, sent


async def test_a_download_within_the_bound_is_saved(fake_api: FakeAPI, tmp_path: Path) -> None:
    pdf = make_pdf(padding=LIMIT // 2)
    packed = gzip.compress(pdf)

    async def fine(request: web.Request) -> web.Response:
        return web.Response(
            body=packed, headers={"Content-Type": "application/pdf", "Content-Encoding": "gzip"}
        )

    fake_api.add("GET", DOC_PATH, fine)
    async with fake_api.client(max_download_size=LIMIT) as client:
        document = await client.download_signed_document(SIG, "d-1", tmp_path)
    assert document.path.read_bytes() == pdf
    assert document.size == len(pdf)


def test_the_default_bound_is_documented() -> None:
    assert DEFAULT_MAX_DOWNLOAD_SIZE == 64 * 1024 * 1024
    from qes_async import QESClient

    assert "max_download_size" in (QESClient.__doc__ or "")


async def test_a_compressed_answer_is_capped_on_its_inflated_size(fake_api: FakeAPI) -> None:
    # 17 MiB of JSON (whitespace inside an object) that gzip packs into about 17 KB.
    body = b'{"signatureId": "sig-1", "status": "pending"' + b" " * (17 * 1024 * 1024) + b"}"
    packed = gzip.compress(body)
    assert len(packed) < 64 * 1024

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(
            body=packed,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    fake_api.add("GET", STATUS_PATH, bomb)
    async with fake_api.client() as client:
        with pytest.raises(DecodeError, match="larger than 16 MiB"):
            await client.get_signature_status(SIG)


async def test_a_json_answer_nested_too_deep_is_a_decode_error(fake_api: FakeAPI) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000

    async def nest(request: web.Request) -> web.Response:
        return web.Response(body=deep, content_type="application/json")

    async def error_nest(request: web.Request) -> web.Response:
        return web.Response(body=deep, status=400, content_type="application/json")

    fake_api.add("GET", STATUS_PATH, nest)
    fake_api.add("GET", "/v1/signatures/{id}/details", error_nest)
    async with fake_api.client() as client:
        with pytest.raises(DecodeError):
            await client.get_signature_status(SIG)
        from qes_async import BadRequestError

        with pytest.raises(BadRequestError):
            await client.get_signature_details(SIG)
