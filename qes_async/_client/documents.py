"""Documents to upload: from a file (streamed in chunks, never read whole) or from bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from .validation import check_file_name

__all__ = ["CHUNK_SIZE", "Document"]

CHUNK_SIZE = 256 * 1024


class Document:
    """A PDF to upload for signing.

    Build one with :meth:`from_path` (the file is streamed from disk in chunks, so large
    files are never held in memory) or :meth:`from_bytes`. ``repr`` never shows the bytes.

    Attributes:
        file_name: the bare file name sent to the service.
        display_name: the name shown to the signer (defaults to ``file_name``).
        size: the size in bytes (for files: at the time the document was created).
        path: the file on disk, or None for in-memory documents.
    """

    __slots__ = ("_data", "_sha256", "display_name", "file_name", "path", "size")

    def __init__(
        self,
        file_name: str,
        *,
        display_name: str | None = None,
        data: bytes | None = None,
        path: Path | None = None,
        size: int = 0,
    ) -> None:
        self.file_name = check_file_name(file_name)
        self.display_name = display_name or file_name
        self._data = data
        self.path = path
        self.size = len(data) if data is not None else size
        self._sha256: str | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], display_name: str | None = None) -> Document:
        """A document read from ``path`` when uploaded; its file name is the path's name.

        Raises:
            InvalidInputError: the path is not a readable regular file.
        """
        from .._core.errors import InvalidInputError

        resolved = Path(path)
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise InvalidInputError(
                "path",
                f"cannot read {resolved.name!r}: {exc.strerror}",
                advice="Pass the path of an existing PDF file.",
            ) from None
        if not resolved.is_file():
            raise InvalidInputError(
                "path", f"{resolved.name!r} is not a file", advice="Pass a PDF file's path."
            )
        return cls(resolved.name, display_name=display_name, path=resolved, size=stat.st_size)

    @classmethod
    def from_bytes(cls, file_name: str, data: bytes, display_name: str | None = None) -> Document:
        """A document held in memory under ``file_name``."""
        return cls(file_name, display_name=display_name, data=bytes(data))

    async def head(self, count: int = 8) -> bytes:
        """The first ``count`` bytes (for the PDF magic check)."""
        if self._data is not None:
            return self._data[:count]
        assert self.path is not None
        return await asyncio.to_thread(_read_head, self.path, count)

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The bytes in chunks; files are read off the event loop, one chunk at a time."""
        if self._data is not None:
            for start in range(0, len(self._data), chunk_size):
                yield self._data[start : start + chunk_size]
            return
        assert self.path is not None
        handle = await asyncio.to_thread(self.path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def sha256(self) -> str:
        """The SHA-256 (hex) of the bytes; computed once, off the event loop for files."""
        if self._sha256 is None:
            if self._data is not None:
                self._sha256 = hashlib.sha256(self._data).hexdigest()
            else:
                assert self.path is not None
                self._sha256 = await asyncio.to_thread(_hash_file, self.path)
        return self._sha256

    def __repr__(self) -> str:
        source = f"path={str(self.path)!r}" if self.path is not None else "in memory"
        return (
            f"Document(file_name={self.file_name!r}, display_name={self.display_name!r}, "
            f"size={self.size}, {source})"
        )


def small_bytes(document: Document) -> bytes | None:
    """The bytes of an in-memory document that fits in one chunk, else None (a file, or
    more than one chunk). An upload sends these as they are, with their length, where a
    stream of one chunk would go with chunked transfer encoding: the same bytes in the
    same memory, in fewer writes."""
    data = document._data
    return data if data is not None and len(data) <= CHUNK_SIZE else None


def _read_head(path: Path, count: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(count)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
