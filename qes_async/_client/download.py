"""Stream a signed document to disk: temp file (0600) in the destination, hash and PDF check
while streaming, fsync, atomic rename. A failed or truncated download leaves no file.

Reads ``multipart/mixed`` (a ``text/plain`` message, then the ``application/pdf`` part) or a
bare ``application/pdf`` body. A file name chosen by the server is reduced to a bare name, so
it can never point outside the destination folder, and cut to 200 bytes keeping ``.pdf``.

A download never replaces a file: it takes its own name (``contract.pdf``); if a file of that
name is already there (another document whose name reduced alike, or an earlier download),
``contract-<first 12 characters of the document id>.pdf``, then ``...-2.pdf`` and so on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NoReturn

import attrs

from .._core.errors import DecodeError
from .._core.models import SignedDocument
from .multipart import Headers, MultipartParser, PartData, PartEnd
from .operations import Operation
from .transport import TransportResponse
from .validation import PDF_MAGIC

__all__ = [
    "MAX_MESSAGE",
    "PARTIAL_GLOB",
    "consume_signed_document",
    "pdf_defect",
    "safe_file_name",
    "write_file",
]

MAX_MESSAGE = 64 * 1024
#: Multipart framing, part headers and skipped parts allowed beyond the document's bound.
MAX_FRAMING = 1024 * 1024
READ_CHUNK = 256 * 1024
TAIL = 1024  # where a PDF's %%EOF must be
_PREFIX, _SUFFIX = ".qes-", ".part"  # temp files not yet renamed into place
PARTIAL_GLOB = f"{_PREFIX}*{_SUFFIX}"


def pdf_defect(head: bytes, tail: bytes) -> str | None:
    """What makes a received file no whole PDF, from its first bytes and last ``TAIL``
    bytes: "is not a PDF", "is truncated (...)", or None when it looks whole."""
    if not head:
        return "is empty: no PDF"
    if not head.startswith(PDF_MAGIC):
        return "is not a PDF"
    if b"%%EOF" not in tail[-TAIL:]:
        return "is truncated (no %%EOF at its end)"
    return None


# File systems allow 255 bytes a name; keep room for the "-<document id>-N" that tells
# two documents apart when their names reduce to the same file.
MAX_NAME_BYTES = 200


def safe_file_name(candidate: str | None, fallback: str) -> str:
    """A bare, harmless file name from a server-supplied one (or ``fallback``).

    Folders, NUL, control characters and leading dots are dropped, ``.pdf`` is added when
    missing, and a name longer than 200 bytes (UTF-8) is cut on a character boundary,
    keeping ``.pdf``.
    """
    for name in (candidate, fallback):
        if not name:
            continue
        base = PureWindowsPath(PurePosixPath(name.replace("\x00", "")).name).name
        base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
        if base and base not in (".", ".."):
            stem = base[:-4] if base.lower().endswith(".pdf") else base
            return _shorten(stem, MAX_NAME_BYTES - 4) + ".pdf"
    return "document.pdf"


def _shorten(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore").rstrip() or "document"


def unused_name(folder: Path, name: str, document_id: str, attempt: int) -> Path:
    """The ``attempt``-th candidate path for a document: its own name first, then the name
    with the document id, then with a counter, so two documents never share a file."""
    if attempt == 0:
        return folder / name
    stem = name[:-4]
    tag = f"{stem}-{document_id[:12]}"
    return folder / (f"{tag}.pdf" if attempt == 1 else f"{tag}-{attempt}.pdf")


@attrs.define
class _Sink:
    """The temp file being written, with its running hash and size."""

    directory: Path
    operation: str
    request_id: str | None
    limit: int  # the largest document accepted, decoded bytes
    path: Path | None = None
    handle: int | None = None
    # The document's own bytes never go into a repr (error trackers record locals).
    digest: hashlib._Hash = attrs.field(factory=hashlib.sha256, repr=False)
    size: int = 0
    head: bytes = attrs.field(default=b"", repr=False)
    tail: bytes = attrs.field(default=b"", repr=False)

    async def open(self) -> None:
        # mkstemp touches the disk: off the event loop, like every other write here.
        fd, name = await asyncio.to_thread(
            tempfile.mkstemp, dir=self.directory, prefix=_PREFIX, suffix=_SUFFIX
        )
        self.handle, self.path = fd, Path(name)  # mkstemp creates it with mode 0600

    async def write(self, chunk: bytes) -> None:
        if len(self.head) < len(PDF_MAGIC):
            self.head += chunk[: len(PDF_MAGIC) - len(self.head)]
            if not PDF_MAGIC.startswith(self.head[: len(PDF_MAGIC)]):
                self._bad("the document does not start with %PDF-")  # no bytes of it
        if self.size + len(chunk) > self.limit:
            self._bad(
                f"the signed document is larger than max_download_size ({self.limit} bytes); "
                "if the documents really are this large, raise QESClient(max_download_size=...)"
            )
        self.digest.update(chunk)
        self.size += len(chunk)
        self.tail = (self.tail + chunk[-TAIL:])[-TAIL:]
        assert self.handle is not None
        await asyncio.to_thread(_write_all, self.handle, chunk)

    def _bad(self, message: str) -> NoReturn:
        raise DecodeError(message, status=200, request_id=self.request_id, operation=self.operation)

    async def finish(
        self, name: str, document_id: str, keep: Collection[str] | None = None
    ) -> Path:
        """Check the PDF, make it durable, and give it a name no other file has."""
        defect = pdf_defect(self.head, self.tail)
        if defect is not None:
            self._bad(f"the signed document {defect}")
        assert self.handle is not None
        assert self.path is not None
        handle, self.handle = self.handle, None
        final = await asyncio.to_thread(
            _sync_close_link, handle, self.path, self.directory, name, document_id, keep
        )
        self.path = None
        return final

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


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as downloads do: temp file (0600), fsync, atomic rename;
    nothing is left behind on failure. Blocking: run it in a thread."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_PREFIX, suffix=_SUFFIX)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    try:
        _sync_close_rename(fd, Path(name), path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _sync_close_rename(fd: int, source: Path, final: Path) -> None:
    _fsync_close(fd)
    os.replace(source, final)
    _fsync_folder(final.parent)


def _sync_close_link(
    fd: int,
    source: Path,
    folder: Path,
    name: str,
    document_id: str,
    keep: Collection[str] | None,
) -> Path:
    """Give the temp file the first free name; never replace a file already there.

    A hard link fails if the name exists, atomically, so two downloads into one folder
    (two documents whose names reduce alike, or two flows) cannot overwrite each other.
    With ``keep`` (a flow's recorded files), only those names are protected: any other
    file of the chosen name is the flow's own unrecorded copy of this document (a crash
    came between the download and the checkpoint) and is replaced, so a resume leaves
    one file per document.
    """
    _fsync_close(fd)
    for attempt in range(1000):
        final = unused_name(folder, name, document_id, attempt)
        if keep is not None:
            if final.name in keep:
                continue
            os.replace(source, final)
            _fsync_folder(folder)
            return final
        try:
            os.link(source, final)
        except FileExistsError:
            continue
        source.unlink()
        _fsync_folder(folder)
        return final
    raise FileExistsError(f"no free file name for document {document_id} in {folder}")


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # make the rename durable where directories fsync
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


async def _read_multipart(resp: TransportResponse, sink: _Sink) -> tuple[str | None, str]:
    """Stream the first PDF part into ``sink``; keep the first text part as the message."""
    try:
        parser = MultipartParser(_boundary(resp))
    except ValueError:
        sink._bad("the multipart answer has no boundary")
    name: str | None = None
    message = bytearray()
    target: str | None = None  # "pdf", "text" or None (skipped part)
    received, bound = 0, sink.limit + MAX_MESSAGE + MAX_FRAMING
    async for chunk in resp.iter_chunks(READ_CHUNK):
        received += len(chunk)
        if received > bound:  # skipped parts and framing count too, not only the PDF
            sink._bad(f"the multipart answer is larger than {bound} bytes")
        try:
            events = parser.feed(chunk)
        except ValueError as exc:
            sink._bad(f"malformed multipart answer ({exc})")
        for event in events:
            if isinstance(event, Headers):
                target = _target(event, sink, bool(message))
                if target == "pdf":
                    name = _filename(event.get("content-disposition", ""))
                    await sink.open()
            elif isinstance(event, PartData):
                if target == "pdf":
                    await sink.write(event)
                elif target == "text" and len(message) < MAX_MESSAGE:
                    message += event[: MAX_MESSAGE - len(message)]
            elif isinstance(event, PartEnd):
                target = None
    if not parser.done:
        sink._bad("the multipart answer is truncated (no closing boundary)")
    return name, message.decode("utf-8", errors="replace").strip()


def _boundary(resp: TransportResponse) -> str:
    params = multidict_params(resp.headers.get("content-type", ""))
    return params.get("boundary", "")


def multidict_params(content_type: str) -> dict[str, str]:
    """The parameters of a Content-Type header (``boundary``...), quotes removed."""
    out: dict[str, str] = {}
    for item in content_type.split(";")[1:]:
        key, _, value = item.partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _target(headers: Headers, sink: _Sink, have_message: bool) -> str | None:
    ptype = headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if ptype == "application/pdf" and sink.path is None and sink.size == 0:
        return "pdf"
    if ptype.startswith("text/") and not have_message:
        return "text"
    return None


def _filename(disposition: str) -> str | None:
    params = multidict_params("x;" + disposition)
    return params.get("filename") or None


async def consume_signed_document(
    resp: TransportResponse,
    destination: Path,
    document_id: str,
    keep: Collection[str] | None = None,
    *,
    limit: int,
) -> SignedDocument:
    """Write the answer's PDF into ``destination``; the :class:`SignedDocument` it became.

    At most ``limit`` decoded bytes of document are accepted (aiohttp inflates a
    compressed answer before it reaches here, so the count is of what lands on disk).
    """
    request_id = resp.headers.get("x-request-id")
    sink = _Sink(destination, Operation.DOWNLOAD_SIGNED_DOCUMENT, request_id, limit)
    # Our own parsing: aiohttp's content_type goes through the email package, and every
    # multipart answer has a new boundary, so its cache never helps (a costly parse each).
    kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    message: str | None = None
    name: str | None = None
    try:
        if kind == "multipart/mixed":
            name, message = await _read_multipart(resp, sink)
        elif kind == "application/pdf":
            declared = resp.content_length
            if declared is not None and declared > limit and "content-encoding" not in resp.headers:
                sink._bad(  # refused before a byte is written
                    f"the signed document is larger than max_download_size ({limit} bytes); "
                    "if the documents really are this large, raise "
                    "QESClient(max_download_size=...)"
                )
            name = _filename(resp.headers.get("content-disposition", ""))
            await sink.open()
            async for chunk in resp.iter_chunks(READ_CHUNK):
                await sink.write(chunk)
        else:
            raise DecodeError(
                f"expected multipart/mixed or application/pdf, got {kind or 'no content type'}",
                status=resp.status,
                request_id=request_id,
                operation=Operation.DOWNLOAD_SIGNED_DOCUMENT,
            )
        digest, size = sink.digest.hexdigest(), sink.size
        final = await sink.finish(safe_file_name(name, document_id), document_id, keep)
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
