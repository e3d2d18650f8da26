"""Document sources: a flow's documents, stored when it starts and found again by flow id.

A flow uploads its documents again after a restart (a new workflow) and after a resume on
another worker; documents given as bytes exist only in the memory of the process that
started the flow. A :class:`DocumentSource` keeps them where every worker can read them:
:class:`SignatureFlow` stores them before it stores the flow, loads them when it is resumed
and discards them once it has ended.

* :class:`FileDocumentSource` keeps the path of a document read from a file and copies one
  given as bytes into a folder (shared by the workers, or local to one process); every
  document found again is checked against the SHA-256 it was stored with.
* :class:`MemoryDocumentSource` holds them in this process (tests, one-process apps).
* ``qes_async.postgres.PostgresDocumentSource`` keeps the bytes in PostgreSQL with the flow.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._client.documents import Document
from .._client.download import write_file
from .._core.errors import DocumentSourceError

__all__ = ["DocumentSource", "FileDocumentSource", "MemoryDocumentSource"]

_MANIFEST = "documents.json"


@runtime_checkable
class DocumentSource(Protocol):
    """Where a flow's documents are kept so that any worker can get them back.

    A flow calls :meth:`store` once, before it is first stored; :meth:`load` when it is
    resumed (also on another worker, also to restart with a new workflow) and
    :meth:`discard` once it has ended.
    """

    async def store(self, flow_id: str, documents: Sequence[Document]) -> None:
        """Keep ``documents`` (in order) for ``flow_id``."""
        ...

    async def load(self, flow_id: str) -> list[Document]:
        """The documents kept for ``flow_id``, in order; ``[]`` if none were.

        Raises:
            DocumentSourceError: one is missing or its SHA-256 changed.
        """
        ...

    async def discard(self, flow_id: str) -> None:
        """Forget the documents of ``flow_id`` (a no-op if there are none)."""
        ...


async def checked(flow_id: str, document: Document, sha256: str) -> Document:
    """``document`` if its bytes still have ``sha256``, else DocumentSourceError."""
    try:
        found = await document.sha256()
    except OSError:
        raise DocumentSourceError(flow_id, document.file_name, "cannot be read") from None
    if found != sha256:
        raise DocumentSourceError(
            flow_id, document.file_name, "changed since the flow stored it (SHA-256 differs)"
        )
    return document


async def read_all(document: Document) -> bytes:
    """The document's bytes (a file is read off the event loop)."""
    return b"".join([chunk async for chunk in document.chunks()])


class MemoryDocumentSource:
    """Documents held in this process's memory: for tests and one-process apps."""

    def __init__(self) -> None:
        self._kept: dict[str, list[tuple[Document, str]]] = {}

    async def store(self, flow_id: str, documents: Sequence[Document]) -> None:
        self._kept[flow_id] = [(doc, await doc.sha256()) for doc in documents]

    async def load(self, flow_id: str) -> list[Document]:
        return [await checked(flow_id, doc, sha) for doc, sha in self._kept.get(flow_id, [])]

    async def discard(self, flow_id: str) -> None:
        self._kept.pop(flow_id, None)

    def __len__(self) -> int:
        return len(self._kept)

    def __repr__(self) -> str:
        return f"MemoryDocumentSource(flows={len(self._kept)})"


class FileDocumentSource:
    """Documents kept on a file system every worker reads (or one process's own disk).

    A document read from a file is kept as its path (the file is never copied, moved or
    deleted); one given as bytes is copied into ``folder``. Each flow's list lives in
    ``folder`` too, under a name derived from the flow id. Every document found again is
    checked against the SHA-256 it had when the flow started: a file changed since then
    raises :class:`~qes_async.DocumentSourceError` and is never uploaded.

    Args:
        folder: where the lists and the copies of in-memory documents go (created if
            missing).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _dir(self, flow_id: str) -> Path:
        # The flow id is the app's: a digest keeps any id a safe, fixed-length name.
        return self.folder / hashlib.sha256(flow_id.encode("utf-8")).hexdigest()[:32]

    async def store(self, flow_id: str, documents: Sequence[Document]) -> None:
        entries = []
        for n, doc in enumerate(documents):
            data = None if doc.path is not None else await read_all(doc)
            entries.append((doc, await doc.sha256(), data, n))
        await asyncio.to_thread(self._write, flow_id, entries)

    def _write(self, flow_id: str, entries: list[tuple[Document, str, bytes | None, int]]) -> None:
        folder = self._dir(flow_id)
        folder.mkdir(parents=True, exist_ok=True)
        manifest: list[dict[str, Any]] = []
        for doc, sha, data, n in entries:
            path = doc.path
            if data is not None:
                path = folder / str(n) / doc.file_name  # keeps the file name it is sent as
                path.parent.mkdir(exist_ok=True)
                write_file(path, data)
            assert path is not None
            manifest.append(
                {
                    "path": str(Path(path).absolute()),
                    "file_name": doc.file_name,
                    "display_name": doc.display_name,
                    "sha256": sha,
                    "copied": data is not None,
                }
            )
        write_file(folder / _MANIFEST, json.dumps({"documents": manifest}).encode())

    async def load(self, flow_id: str) -> list[Document]:
        manifest = await asyncio.to_thread(self._read, flow_id)
        documents = []
        for entry in manifest:
            try:
                doc = Document.from_path(entry["path"], entry["display_name"])
            except Exception:
                raise DocumentSourceError(
                    flow_id, entry["file_name"], "is no longer where the flow stored it"
                ) from None
            documents.append(await checked(flow_id, doc, entry["sha256"]))
        return documents

    def _read(self, flow_id: str) -> list[dict[str, Any]]:
        try:
            raw = (self._dir(flow_id) / _MANIFEST).read_bytes()
        except FileNotFoundError:
            return []
        entries: list[dict[str, Any]] = json.loads(raw)["documents"]
        return entries

    async def discard(self, flow_id: str) -> None:
        # Only the list and the copies: the app's own files are never touched.
        await asyncio.to_thread(shutil.rmtree, self._dir(flow_id), True)

    def __repr__(self) -> str:
        return f"FileDocumentSource({str(self.folder)!r})"
