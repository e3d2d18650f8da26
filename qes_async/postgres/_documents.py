# Table names are interpolated only from Tables, whose prefix is checked against
# [a-z_][a-z0-9_]*; every value is a bind parameter.
# ruff: noqa: S608
"""PostgresDocumentSource: a flow's documents in PostgreSQL, next to the flow itself.

Every worker reads the same table, so a flow started from bytes on one worker is resumed,
or restarted with a new workflow, on any other with no storage of the app's own. The bytes
are stored in one statement before the flow is, and deleted once it has ended (by the flow
itself, and by the sweeper's pruning for a flow whose worker died as it ended).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._client.client import DEFAULT_MAX_DOCUMENT_SIZE  # the client's upload limit
from .._client.documents import Document
from .._core.errors import InvalidInputError
from .._flow.sources import checked, read_all
from ._store import PostgresFlowStore

__all__ = ["DEFAULT_MAX_DOCUMENT_SIZE", "PostgresDocumentSource"]


class PostgresDocumentSource:
    """A :class:`~qes_async.DocumentSource` in the flows' own PostgreSQL database.

    Args:
        store: the :class:`PostgresFlowStore` whose pool and table prefix it uses (it may
            be not yet open; the pool is looked up on each call).
        max_document_size: the largest document kept, in bytes (default: the client's
            default upload limit, 50 MiB); a larger one is refused before anything is
            stored.
    """

    def __init__(
        self, store: PostgresFlowStore, *, max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE
    ) -> None:
        if max_document_size <= 0:
            raise InvalidInputError("max_document_size", "must be a positive number of bytes")
        self._store = store
        self.tables = store.tables
        self.max_document_size = max_document_size

    async def store(self, flow_id: str, documents: Sequence[Document]) -> None:
        """Keep the documents' bytes for ``flow_id`` (replacing what was kept for it).

        Raises:
            InvalidInputError: a document is larger than ``max_document_size``.
        """
        rows: list[tuple[int, str, str, str, bytes]] = []
        for n, doc in enumerate(documents):
            self._check_size(doc.file_name, doc.size)
            data = await read_all(doc)
            self._check_size(doc.file_name, len(data))  # a file that grew since
            rows.append((n, doc.file_name, doc.display_name, await doc.sha256(), data))
        table = self.tables.documents
        await self._store.pool.execute(
            f"WITH gone AS (DELETE FROM {table} WHERE flow_id = $1 AND position >= $7)"
            f" INSERT INTO {table} (flow_id, position, file_name, display_name, sha256, data)"
            " SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[],"
            " $6::bytea[]) ON CONFLICT (flow_id, position) DO UPDATE SET"
            " file_name = excluded.file_name, display_name = excluded.display_name,"
            " sha256 = excluded.sha256, data = excluded.data",
            flow_id,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
            len(rows),
        )

    def _check_size(self, file_name: str, size: int) -> None:
        if size > self.max_document_size:
            raise InvalidInputError(
                "documents",
                f"{file_name!r} is {size} bytes; the document source keeps at most "
                f"{self.max_document_size}",
                advice="Raise max_document_size, or keep such documents in files.",
            )

    async def load(self, flow_id: str) -> list[Document]:
        """The documents kept for ``flow_id``, each checked against its SHA-256."""
        rows = await self._store.pool.fetch(
            f"SELECT file_name, display_name, sha256, data FROM {self.tables.documents}"
            " WHERE flow_id = $1 ORDER BY position",
            flow_id,
        )
        documents = []
        for r in rows:
            doc = Document.from_bytes(r["file_name"], r["data"], r["display_name"])
            documents.append(await checked(flow_id, doc, r["sha256"]))
        return documents

    async def discard(self, flow_id: str) -> None:
        """Delete the documents of ``flow_id``."""
        await self._store.pool.execute(
            f"DELETE FROM {self.tables.documents} WHERE flow_id = $1", flow_id
        )

    async def prune(self) -> int:
        """Delete the documents of flows that have finished; returns how many.

        A flow discards its own when it ends; this catches those whose worker died in
        between (the sweeper runs it now and then).
        """
        status = await self._store.pool.execute(
            f"DELETE FROM {self.tables.documents} AS d USING {self.tables.flows} AS f"
            " WHERE f.flow_id = d.flow_id AND f.finished"
        )
        return int(status.split()[-1])

    def __repr__(self) -> str:
        return f"PostgresDocumentSource(prefix={self.tables.prefix!r})"
