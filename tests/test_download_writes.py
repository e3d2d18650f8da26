"""How a download reaches the disk: few thread hops, every byte in order, nothing left over.

A small document costs two executor hops (create with the first chunk; the rest, fsync and
rename), whatever its number of chunks; a large one
is written by a thread of its own while the loop keeps reading. Whatever the size, the
file holds exactly the bytes received, its SHA-256 is theirs, and a failure or a
cancellation leaves no file and no temp file.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from qes_async import DecodeError
from qes_async._client import download
from qes_async._client.download import consume_signed_document

# Fallbacks let this file run against the code before batching (where it must fail).
BATCH: int = getattr(download, "BATCH", 1024 * 1024)
AHEAD: int = getattr(download, "AHEAD", 4 * BATCH)


class _CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting the hops handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.hops = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.hops += 1
        return super().submit(fn, *args, **kwargs)


class _Content:
    def __init__(self, chunks: list[bytes], stall_after: int | None = None) -> None:
        self._chunks = chunks
        self._stall_after = stall_after
        self.stalled = asyncio.Event()

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        for number, chunk in enumerate(self._chunks):
            if number == self._stall_after:
                self.stalled.set()
                await asyncio.Event().wait()  # never comes: the download hangs here
            yield chunk
            await asyncio.sleep(0)


class _Response:
    """As much of a TransportResponse as a download reads."""

    status = 200
    content_length = None

    def __init__(self, content: _Content) -> None:
        self.headers = {  # lower-case names, as the protocol's lookups use
            "content-type": "application/pdf",
            "content-disposition": "x; filename=a.pdf",
        }
        self.content = content

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        return self.content.iter_chunked(size)


def _pdf_chunks(total: int, chunk: int = 256 * 1024) -> list[bytes]:
    body = bytearray(b"%PDF-1.7\n")
    counter = 0
    while len(body) < total - 7:
        body += (b"%d " % counter) * 50 + b"\n"
        counter += 1
    data = bytes(body[: total - 7]) + b"%%EOF\n\n"
    return [data[i : i + chunk] for i in range(0, len(data), chunk)]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _join_writers() -> None:
    for thread in threading.enumerate():
        if thread.name == "qes-download":
            thread.join(timeout=10)


async def _consume(chunks: list[bytes], folder: Path) -> Any:
    response: Any = _Response(_Content(chunks))
    return await consume_signed_document(response, folder, "doc-1", limit=1 << 30)


async def test_a_small_document_costs_two_executor_hops(tmp_path: Path) -> None:
    executor = _CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    chunks = _pdf_chunks(900 * 1024, chunk=128 * 1024)  # eight chunks, under one batch
    signed = await _consume(chunks, tmp_path)
    assert executor.hops == 2  # first chunk; the rest with fsync and rename
    assert Path(signed.path).read_bytes() == b"".join(chunks)


@pytest.mark.parametrize("total", [BATCH * 3 + 12345, AHEAD * 3])
async def test_a_large_document_is_written_whole_and_in_order(tmp_path: Path, total: int) -> None:
    chunks = _pdf_chunks(total)
    signed = await _consume(chunks, tmp_path)
    data = b"".join(chunks)
    assert Path(signed.path).read_bytes() == data
    assert signed.sha256 == hashlib.sha256(data).hexdigest()
    assert signed.size == len(data)
    assert _leftovers(tmp_path) == ["a.pdf"]
    assert Path(signed.path).stat().st_mode & 0o777 == 0o600


async def test_a_large_truncated_document_leaves_no_file(tmp_path: Path) -> None:
    chunks = _pdf_chunks(BATCH * 4)
    chunks[-1] = chunks[-1].replace(b"%%EOF", b"%%EOX")
    with pytest.raises(DecodeError, match="truncated"):
        await _consume(chunks, tmp_path)
    _join_writers()
    assert _leftovers(tmp_path) == []


async def test_a_download_cancelled_midway_leaves_no_file(tmp_path: Path) -> None:
    content = _Content(_pdf_chunks(BATCH * 6), stall_after=12)
    response: Any = _Response(content)
    task = asyncio.create_task(consume_signed_document(response, tmp_path, "doc-1", limit=1 << 30))
    await content.stalled.wait()
    await asyncio.sleep(0.05)  # let the writer reach the disk: a temp file exists now
    assert any(name.endswith(".part") for name in _leftovers(tmp_path))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _join_writers()
    assert _leftovers(tmp_path) == []


async def test_a_disk_error_in_the_writer_reaches_the_caller(tmp_path: Path) -> None:
    missing = tmp_path / "gone"  # the folder vanished: the temp file cannot be made
    with pytest.raises(FileNotFoundError):
        await _consume(_pdf_chunks(BATCH * 4), missing)
    _join_writers()
    assert _leftovers(tmp_path) == []


class _Failing(_Content):
    """Chunks, then the connection drops (the transport's error, raised mid-body)."""

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
            await asyncio.sleep(0)
        raise ConnectionResetError("dropped mid-body")


async def test_a_failed_download_has_left_no_file_when_it_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk's write runs in a thread the loop does not wait for; a failure
    right after it must still leave nothing once the error reaches the caller, not a
    moment later (the old discard returned while that write was still making the file)."""
    import time

    append = download._TempFile._append

    def slow_append(self: Any, chunks: list[bytes]) -> None:
        append(self, chunks)  # the temp file exists from here...
        time.sleep(0.2)  # ...while the write is still busy

    monkeypatch.setattr(download._TempFile, "_append", slow_append)
    response: Any = _Response(_Failing(_pdf_chunks(64 * 1024)[:1]))
    with pytest.raises(ConnectionResetError):
        await consume_signed_document(response, tmp_path, "doc-1", limit=1 << 30)
    assert _leftovers(tmp_path) == []
