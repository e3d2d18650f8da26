"""The evidence record kept in PostgreSQL: a resumed flow continues the same chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import world
from pg_cluster import pg_dsn, pg_prefix
from test_evidence import resumed_chain_through

from qes_async.postgres import PostgresFlowStore

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = pytest.mark.postgres


async def test_postgres_keeps_the_record_and_a_resume_continues_it(
    tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    async with (
        world(tmp_path) as w,
        PostgresFlowStore(pg_dsn, prefix=pg_prefix, clock=w.clock, migrate=True) as store,
    ):
        await resumed_chain_through(store, w)
