"""Many workers on PostgreSQL: a shared flow store, a webhook relay, signer hand-off, sweeper.

Install with ``pip install 'qes-async[postgres]'`` (asyncpg).  Nothing here is imported by
``import qes_async``; import this package where you run several workers::

    from qes_async.postgres import PostgresDocumentSource, PostgresFlowStore, Worker, migrate

Create the tables once per deployment (idempotent)::

    python -m qes_async.postgres migrate --dsn "$DATABASE_URL" --prefix qes_
"""

from __future__ import annotations

from ._documents import PostgresDocumentSource
from ._listener import Listener
from ._relay import PostgresRelay, RecordingDispatcher
from ._schema import DEFAULT_PREFIX, SCHEMA_VERSION, Tables, migrate
from ._signer_relay import SignerRelay
from ._store import PostgresFlowStore
from ._worker import LeasingStore, Resume, Worker, WorkerSettings, WorkerStats

__all__ = [
    "DEFAULT_PREFIX",
    "SCHEMA_VERSION",
    "LeasingStore",
    "Listener",
    "PostgresDocumentSource",
    "PostgresFlowStore",
    "PostgresRelay",
    "RecordingDispatcher",
    "Resume",
    "SignerRelay",
    "Tables",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
    "migrate",
]
