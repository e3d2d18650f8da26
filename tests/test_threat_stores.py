"""Threat model: what the stores keep at rest.

Flow checkpoints hold mobile numbers, and the PostgreSQL signer relay briefly holds
passcodes. This module defends against:

- the SQLite store and its ``-wal``/``-shm`` files created world-readable (0644 under the
  usual umask): they are created 0600.

Damaged rows (not JSON, too deep, invalid UTF-8) raising something other than
``StateFormatError`` are covered in ``tests/test_store_corrupt.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qes_async import SQLiteFlowStore


async def test_the_database_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual default, which would give 0644
    try:
        path = tmp_path / "flows.db"
        async with SQLiteFlowStore(path) as store:
            await store.create("flow-1", {"format": 1, "mobile": "+31612345678"})
            files = [p for p in tmp_path.iterdir() if p.name.startswith("flows.db")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        os.umask(old)
    assert {"flows.db", "flows.db-wal", "flows.db-shm"} <= set(modes)
    assert all(mode == 0o600 for mode in modes.values()), modes
