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
import threading
from collections.abc import Callable, Collection
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import attrs

from .._core.errors import DecodeError
from .._core.models import SignedDocument
from .multipart import Headers, MultipartParser, PartData, PartEnd
from .operations import Operation
from .transport import TransportResponse
from .validation import PDF_MAGIC

if TYPE_CHECKING:
    import queue

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


#: Bytes gathered before they go to the disk side in one piece (a ``writev``).
BATCH = 1024 * 1024
BATCH_CHUNKS = 64  # and never more pieces than one writev takes comfortably
#: A document larger than a batch is written by a thread of its own, fed by a queue; the
#: loop runs at most this far ahead of it, so memory stays bounded whatever the size.
AHEAD = 4 * BATCH
#: Written bytes handed to the disk's writeback at a time, while the download goes on.
WRITEBACK = 8 * BATCH
_ADVISE = getattr(os, "POSIX_FADV_DONTNEED", None)


class _TempFile:
    """The temp file and its running hash, touched by one thread at a time.

    Created (mkstemp, 0600), written, hashed, fsynced and renamed off the event loop, so
    the loop never waits on the disk or on SHA-256. ``abandon`` (from the loop) removes
    the file at once or, when a write is still running, lets that write remove it as it
    ends: the descriptor is never closed under a write.
    """

    __slots__ = ("_abandoned", "_flushed", "_lock", "_written", "digest", "directory", "fd", "path")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd: int | None = None
        self.path: Path | None = None
        self.digest = hashlib.sha256()
        self._lock = threading.Lock()
        self._abandoned = False
        self._written = self._flushed = 0  # bytes written; bytes handed to writeback

    def write(self, chunks: list[bytes]) -> None:
        """Blocking: create the file on first use, hash and append ``chunks``."""
        try:
            with self._lock:
                if self._abandoned:
                    raise FileNotFoundError("the download was abandoned")
                self._append(chunks)
        finally:
            self._reap()

    def finish(
        self,
        chunks: list[bytes],
        name: str,
        document_id: str,
        keep: Collection[str] | None,
    ) -> Path:
        """Blocking: append the last ``chunks``, fsync, and link under a free name."""
        try:
            with self._lock:
                if self._abandoned:
                    raise FileNotFoundError("the download was abandoned")
                self._append(chunks)
                assert self.fd is not None
                assert self.path is not None
                fd, self.fd = self.fd, None
                final = _sync_close_link(fd, self.path, self.directory, name, document_id, keep)
                self.path = None
                return final
        finally:
            self._reap()

    def abandon(self) -> None:
        """From the loop: no more writes; remove the file now or when the running one ends.

        The flag is set before the lock is tried: either the lock is free and the file goes
        now, or a write holds it and sees the flag in ``_reap`` once it has let go (a check
        made inside the lock could read the flag just before it is set, and leave the file).
        """
        self._abandoned = True
        if self._lock.acquire(blocking=False):
            try:
                self._remove()
            finally:
                self._lock.release()

    def _reap(self) -> None:
        """After a write let go of the lock: remove the file if the download was abandoned."""
        if self._abandoned:
            with self._lock:
                self._remove()

    def _append(self, chunks: list[bytes]) -> None:
        if self.fd is None:
            fd, name = tempfile.mkstemp(dir=self.directory, prefix=_PREFIX, suffix=_SUFFIX)
            self.fd, self.path = fd, Path(name)  # mkstemp creates it with mode 0600
        for chunk in chunks:
            self.digest.update(chunk)  # hashlib lets go of the GIL for large pieces
        self._written += _writev_all(self.fd, chunks)
        if _ADVISE is not None and self._written - self._flushed >= WRITEBACK:
            # Start the disk on what is written so far (no wait, no durability promised:
            # the fsync at the end still makes it so), so that fsync has little left.
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.fd, self._flushed, self._written - self._flushed, _ADVISE)
            self._flushed = self._written

    def _remove(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


class _Finish(NamedTuple):  # a tuple, not an attrs class: nothing to build at import
    chunks: list[bytes]
    name: str
    document_id: str
    keep: Collection[str] | None
    done: asyncio.Future[Path]


class _Writer:
    """A thread of one large download's own: takes batches from a queue and writes them
    in order while the loop keeps reading; the loop waits only when it is ``AHEAD`` bytes
    ahead. The first failure is kept and raised on the loop at the next batch or at the
    end; nothing more is written after it."""

    def __init__(self, file: _TempFile, loop: asyncio.AbstractEventLoop) -> None:
        self._file = file
        self._loop = loop
        import queue  # only large downloads need it: not loaded at import

        self._queue: queue.SimpleQueue[tuple[list[bytes], int] | _Finish | None]
        self._queue = queue.SimpleQueue()
        self._ahead = 0  # bytes handed over and not yet written
        self._room: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        #: Done when the thread has ended (its last write, and any removal, are over).
        self.ended: asyncio.Future[None] = loop.create_future()
        threading.Thread(target=self._run, name="qes-download", daemon=True).start()

    async def put(self, chunks: list[bytes], size: int) -> None:
        self._raise()
        self._ahead += size
        self._queue.put((chunks, size))
        while self._ahead > AHEAD:
            self._room = self._loop.create_future()
            await self._room
            self._raise()

    async def finish(
        self, chunks: list[bytes], name: str, document_id: str, keep: Collection[str] | None
    ) -> Path:
        self._raise()
        done: asyncio.Future[Path] = self._loop.create_future()
        self._queue.put(_Finish(chunks, name, document_id, keep, done))
        return await done

    def stop(self) -> asyncio.Future[None]:
        """No more batches; the future is done once the thread has ended."""
        self._queue.put(None)
        return self.ended

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:  # in the writer's thread
        try:
            while (item := self._queue.get()) is not None:
                if isinstance(item, _Finish):
                    self._finish(item)
                    return
                chunks, size = item
                if self.error is None:
                    try:
                        self._file.write(chunks)
                    except BaseException as exc:  # raised on the loop, at the next batch
                        self.error = exc
                self._call(self._written, size)
        finally:
            self._call(_end, self.ended)

    def _finish(self, item: _Finish) -> None:
        try:
            if self.error is not None:
                raise self.error
            final = self._file.finish(item.chunks, item.name, item.document_id, item.keep)
        except BaseException as exc:
            self._call(_settle, item.done, None, exc)
        else:
            self._call(_settle, item.done, final, None)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(callback, *args)

    def _written(self, size: int) -> None:  # on the loop
        self._ahead -= size
        if self._room is not None and not self._room.done() and self._ahead <= AHEAD // 2:
            self._room.set_result(None)
            self._room = None
        elif self.error is not None and self._room is not None and not self._room.done():
            self._room.set_result(None)


def _end(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(future: asyncio.Future[Path], result: Path | None, error: BaseException | None) -> None:
    if future.done():  # cancelled: the download was given up
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


@attrs.define
class _Sink:
    """The document being received: its checks on the loop, its bytes batched off it.

    Size, head and tail are checked as the chunks come. The first chunk is written at
    once (one executor hop creates the file, not awaited); the next are gathered into
    batches of about ``BATCH`` bytes. A document of one batch costs two executor hops in
    all (create and write; then the rest, fsync and rename); a larger one gets a writer
    thread of its own, fed in order, so reading and writing overlap.
    """

    directory: Path
    operation: str
    request_id: str | None
    limit: int  # the largest document accepted, decoded bytes
    started: bool = False  # the PDF's part (or body) has begun
    size: int = 0
    # The document's own bytes never go into a repr (error trackers record locals).
    head: bytes = attrs.field(default=b"", repr=False)
    tail: bytes = attrs.field(default=b"", repr=False)
    _file: _TempFile | None = attrs.field(default=None, repr=False)
    _writer: _Writer | None = attrs.field(default=None, repr=False)
    _opening: asyncio.Future[None] | None = attrs.field(default=None, repr=False)
    _batch: list[bytes] = attrs.field(factory=list, repr=False)
    _pending: int = 0

    async def open(self) -> None:
        # No disk yet: the temp file is created off the event loop, with the first write.
        self.started = True
        self._file = _TempFile(self.directory)

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
        self.size += len(chunk)
        self.tail = (self.tail + chunk[-TAIL:])[-TAIL:]
        assert self._file is not None
        if self._opening is None:
            # The first chunk goes to disk at once, without waiting for it: the file (0600)
            # is there from the start of the document, the next chunks are batched.
            loop = asyncio.get_running_loop()
            self._opening = loop.run_in_executor(None, self._file.write, [chunk])
            return
        self._batch.append(chunk)
        self._pending += len(chunk)
        if self._pending >= BATCH or len(self._batch) >= BATCH_CHUNKS:
            if self._writer is None:
                await self._opening  # written before the writer's first batch: in order
                self._writer = _Writer(self._file, asyncio.get_running_loop())
            batch, size = self._take()
            await self._writer.put(batch, size)

    def _take(self) -> tuple[list[bytes], int]:
        batch, size = self._batch, self._pending
        self._batch, self._pending = [], 0
        return batch, size

    def _bad(self, message: str) -> NoReturn:
        raise DecodeError(message, status=200, request_id=self.request_id, operation=self.operation)

    async def finish(
        self, name: str, document_id: str, keep: Collection[str] | None = None
    ) -> tuple[Path, str]:
        """Check the PDF, make it durable, and give it a name no other file has; the
        final path and the document's SHA-256."""
        defect = pdf_defect(self.head, self.tail)
        if defect is not None:
            self._bad(f"the signed document {defect}")
        assert self._file is not None
        batch, _ = self._take()
        if self._opening is not None:
            await self._opening  # done long ago, but its failure is raised here
        if self._writer is not None:
            final = await self._writer.finish(batch, name, document_id, keep)
            self._writer = None  # its thread has ended
        else:
            loop = asyncio.get_running_loop()
            final = await loop.run_in_executor(
                None, self._file.finish, batch, name, document_id, keep
            )
        digest = self._file.digest.hexdigest()
        self._file = None
        return final, digest

    async def discard(self) -> None:
        """Give the document up: once this returns, no file of it is left, temp or not.

        The temp file is flagged first, so a write in flight removes its own file as it
        ends; then the first write and the writer thread are awaited (shielded: a second
        cancellation cannot leave a file behind that a write is still making).
        """
        file, opening, writer = self._file, self._opening, self._writer
        self._file, self._writer, self._batch = None, None, []
        if file is not None:
            file.abandon()
        pending = [f for f in (opening, writer.stop() if writer else None) if f is not None]
        if pending:
            await asyncio.shield(asyncio.gather(*pending, return_exceptions=True))


def _writev_all(fd: int, chunks: list[bytes]) -> int:
    if not chunks:
        return 0
    written = os.writev(fd, chunks)
    total = sum(len(chunk) for chunk in chunks)
    if written < total:  # a short write: rare on files, finish it piece by piece
        _write_all(fd, b"".join(chunks)[written:])
    return total


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
    if ptype == "application/pdf" and not sink.started:
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
        size = sink.size
        final, digest = await sink.finish(safe_file_name(name, document_id), document_id, keep)
    except BaseException:
        await sink.discard()
        raise
    return SignedDocument(
        document_id=document_id,
        path=final,
        sha256=digest,
        size=size,
        message=message or None,
        request_id=request_id,
    )
