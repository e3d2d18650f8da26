# Table names are interpolated only from Tables, whose prefix is checked against
# [a-z_][a-z0-9_]*; every value is a bind parameter.
# ruff: noqa: S608
"""The PostgreSQL schema: table names from a prefix, and an idempotent migration.

Every table name starts with a configurable prefix (``qes_`` by default), so several apps,
or several test runs, can share one database.  :func:`migrate` creates what is missing and
changes nothing that exists; it takes an advisory lock, so workers that all migrate at start
do not trip over each other.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import attrs

from .._core.errors import InvalidInputError

__all__ = ["DEFAULT_PREFIX", "SCHEMA_VERSION", "Tables", "migrate"]

DEFAULT_PREFIX = "qes_"
# 2: the documents table; kept and claimed_pid on signer submissions (added in place).
SCHEMA_VERSION = 2
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")


@attrs.frozen
class Tables:
    """The table and channel names for one prefix (only ``[a-z0-9_]``, so safe in SQL)."""

    prefix: str = DEFAULT_PREFIX

    def __attrs_post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise InvalidInputError(
                "prefix", "use 1 to 40 lowercase letters, digits or _, not starting with a digit"
            )

    @property
    def flows(self) -> str:
        """Flow state, versions and leases."""
        return f"{self.prefix}flows"

    @property
    def events(self) -> str:
        """Webhook events recorded by any worker."""
        return f"{self.prefix}events"

    @property
    def signer(self) -> str:
        """Consent and passcode submissions on their way to the driving worker."""
        return f"{self.prefix}signer"

    @property
    def asks(self) -> str:
        """What each flow waits for from its signer, for pages served by any worker."""
        return f"{self.prefix}asks"

    @property
    def documents(self) -> str:
        """The documents of unfinished flows (PostgresDocumentSource)."""
        return f"{self.prefix}documents"

    @property
    def meta(self) -> str:
        """The schema version."""
        return f"{self.prefix}meta"

    @property
    def events_channel(self) -> str:
        """NOTIFY channel: a webhook event was recorded (payload: its id)."""
        return f"{self.prefix}events"

    @property
    def signer_channel(self) -> str:
        """NOTIFY channel: a submission was recorded (payload: its id and flow id)."""
        return f"{self.prefix}signer"

    @property
    def answers_channel(self) -> str:
        """NOTIFY channel: a submission was answered (payload: its id)."""
        return f"{self.prefix}signer_answers"

    def ddl(self) -> list[str]:
        """The statements that create every missing table and index."""
        p = self.prefix
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.flows} (
                flow_id TEXT PRIMARY KEY,
                version BIGINT NOT NULL,
                data JSONB NOT NULL,
                finished BOOLEAN NOT NULL DEFAULT FALSE,
                due_at DOUBLE PRECISION,
                updated_at DOUBLE PRECISION NOT NULL,
                lease_owner TEXT,
                lease_token BIGINT NOT NULL DEFAULT 0,
                lease_expires DOUBLE PRECISION NOT NULL DEFAULT 0)""",
            f"CREATE INDEX IF NOT EXISTS {p}flows_due ON {self.flows} (due_at, flow_id)"
            " WHERE NOT finished",
            f"""CREATE TABLE IF NOT EXISTS {self.events} (
                id BIGSERIAL PRIMARY KEY,
                signature_id TEXT NOT NULL,
                body JSONB NOT NULL,
                recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
            f"CREATE INDEX IF NOT EXISTS {p}events_time ON {self.events} (recorded_at)",
            f"""CREATE TABLE IF NOT EXISTS {self.signer} (
                id BIGSERIAL PRIMARY KEY,
                flow_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                value TEXT,
                claimed_by TEXT,
                answer TEXT,
                attempts_left INTEGER,
                recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
            # The pruning of stale submissions (on each submission and each safety poll).
            f"CREATE INDEX IF NOT EXISTS {p}signer_time ON {self.signer} (recorded_at)",
            f"""CREATE TABLE IF NOT EXISTS {self.asks} (
                flow_id TEXT PRIMARY KEY,
                worker_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                request JSONB NOT NULL,
                deadline DOUBLE PRECISION NOT NULL)""",
            *self._ddl_v2(),
            f"""CREATE TABLE IF NOT EXISTS {self.meta} (
                key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
            f"INSERT INTO {self.meta} AS m (key, value)"
            f" VALUES ('schema_version', '{SCHEMA_VERSION}') ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value WHERE m.value::int < excluded.value::int",
        ]

    def _ddl_v2(self) -> list[str]:
        """What schema 2 added: kept signer answers and the documents table."""
        p = self.prefix
        return [
            # kept: its submitter was told the flow is moving and left; the next driver
            # uses it. claimed_pid: the claiming worker's listening session, whose end
            # tells a waiting submitter at once that the claimer died.
            f"ALTER TABLE {self.signer} ADD COLUMN IF NOT EXISTS kept BOOLEAN NOT NULL"
            " DEFAULT FALSE",
            f"ALTER TABLE {self.signer} ADD COLUMN IF NOT EXISTS claimed_pid INTEGER",
            # generation: of the question shown when it was submitted; a kept answer is
            # never given to a later workflow's question (a new SMS, a new consent).
            f"ALTER TABLE {self.signer} ADD COLUMN IF NOT EXISTS generation INTEGER",
            f"CREATE INDEX IF NOT EXISTS {p}signer_flow ON {self.signer} (flow_id)",
            f"""CREATE TABLE IF NOT EXISTS {self.documents} (
                flow_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                file_name TEXT NOT NULL,
                display_name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (flow_id, position))""",
        ]

    @property
    def lock_key(self) -> int:
        """The advisory lock that serializes migrations of this prefix."""
        return zlib.crc32(self.prefix.encode("ascii"))


async def migrate(conn: Any, prefix: str = DEFAULT_PREFIX) -> Tables:
    """Create the tables for ``prefix`` if they are missing (idempotent, concurrency-safe).

    Args:
        conn: an asyncpg connection (or pool).
        prefix: the table name prefix.

    Returns:
        the :class:`Tables` migrated.

    Raises:
        InvalidInputError: the prefix is not a safe identifier.
    """
    tables = Tables(prefix)
    if hasattr(conn, "acquire"):
        async with conn.acquire() as held:
            await _migrate(held, tables)
    else:
        await _migrate(conn, tables)
    return tables


async def _migrate(conn: Any, tables: Tables) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", tables.lock_key)
        for statement in tables.ddl():
            await conn.execute(statement)
