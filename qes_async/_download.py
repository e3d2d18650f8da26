"""Stream a signed document to disk: temp file (0600) in the destination, hash and PDF check
while streaming, fsync, atomic rename. A failed or truncated download leaves no file.

Reads ``multipart/mixed`` (a ``text/plain`` message, then the ``application/pdf`` part) or a
bare ``application/pdf`` body. A file name chosen by the server is reduced to a bare name, so
it can never point outside the destination folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NoReturn

import aiohttp
import attrs

from ._errors import DecodeError
from ._models import SignedDocument

__all__ = ["MAX_MESSAGE", "consume_signed_document", "safe_file_name"]

MAX_MESSAGE = 64 * 1024
READ_CHUNK = 256 * 1024
_PDF_MAGIC = b"%PDF-"


def safe_file_name(candidate: str | None, fallback: str) -> str:
    """A bare, harmless file name from a server-supplied one (or ``fallback``)."""
    for name in (candidate, fallback):
        if not name:
            continue
        base = PureWindowsPath(PurePosixPath(name.replace("\x00", "")).name).name
        base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
        if base and base not in (".", ".."):
            return base if base.lower().endswith(".pdf") else base + ".pdf"
    return "document.pdf"


@attrs.define
class _Sink:
    """The temp file being written, with its running hash and size."""

    directory: Path
    operation: str
    request_id: str | None
    path: Path | None = None
    handle: int | None = None
    digest: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    size: int = 0
    head: bytes = b""
    tail: bytes = b""

    def open(self) -> None:
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=".qes-", suffix=".part")
        self.handle, self.path = fd, Path(name)  # mkstemp creates it with mode 0600

    async def write(self, chunk: bytes) -> None:
        if len(self.head) < len(_PDF_MAGIC):
            self.head += chunk[: len(_PDF_MAGIC) - len(self.head)]
            if not _PDF_MAGIC.startswith(self.head[: len(_PDF_MAGIC)]):
                self._bad("the document does not start with %PDF-", chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        self.tail = (self.tail + chunk)[-1024:]
        assert self.handle is not None
        await asyncio.to_thread(_write_all, self.handle, chunk)

    def _bad(self, message: str, body: bytes | None = None) -> NoReturn:
        raise DecodeError(
            message, status=200, body=body, request_id=self.request_id, operation=self.operation
        )

    async def finish(self, final: Path) -> None:
        if self.size == 0 or self.head != _PDF_MAGIC:
            self._bad("the answer holds no PDF document")
        if b"%%EOF" not in self.tail:
            self._bad("the PDF document is truncated (no %%EOF at its end)")
        assert self.handle is not None
        assert self.path is not None
        handle, self.handle = self.handle, None
        await asyncio.to_thread(_sync_close_rename, handle, self.path, final)
        self.path = None

    def discard(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                os.close(self.handle)
            self.handle = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_close_rename(fd: int, source: Path, final: Path) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(source, final)
    with contextlib.suppress(OSError):  # make the rename durable where directories fsync
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


async def _iter(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    async for chunk in content.iter_chunked(READ_CHUNK):
        yield chunk


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(READ_CHUNK):
        yield chunk


async def consume_signed_document(
    resp: aiohttp.ClientResponse, destination: Path, document_id: str
) -> SignedDocument:
    """Write the answer's PDF into ``destination``; the :class:`SignedDocument` it became."""
    request_id = resp.headers.get("X-Request-Id")
    sink = _Sink(destination, "download_signed_document", request_id)
    kind = resp.content_type.lower()
    message: str | None = None
    try:
        if kind == "multipart/mixed":
            reader = aiohttp.MultipartReader(resp.headers, resp.content)
            name: str | None = None
            while (part := await reader.next()) is not None:
                assert isinstance(part, aiohttp.BodyPartReader)
                ptype = part.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if ptype == "application/pdf" and sink.path is None:
                    name = part.filename
                    sink.open()
                    async for chunk in _part_chunks(part):
                        await sink.write(chunk)
                elif ptype.startswith("text/") and message is None:
                    raw = await part.read(decode=True)
                    message = raw[:MAX_MESSAGE].decode("utf-8", errors="replace").strip()
                else:
                    await part.release()
        elif kind == "application/pdf":
            name = resp.content_disposition.filename if resp.content_disposition else None
            sink.open()
            async for chunk in _iter(resp.content):
                await sink.write(chunk)
        else:
            raise DecodeError(
                f"expected multipart/mixed or application/pdf, got {kind or 'no content type'}",
                status=resp.status,
                request_id=request_id,
                operation="download_signed_document",
            )
        final = destination / safe_file_name(name, document_id)
        digest, size = sink.digest.hexdigest(), sink.size
        await sink.finish(final)
    except BaseException:
        sink.discard()
        raise
    return SignedDocument(
        document_id=document_id,
        path=final,
        sha256=digest,
        size=size,
        message=message or None,
        request_id=request_id,
    )
