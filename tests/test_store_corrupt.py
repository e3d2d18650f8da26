"""A damaged stored row ends as StateFormatError naming the flow, never a parser's error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qes_async import SQLiteFlowStore, StateFormatError

DAMAGE = {
    "not_json": b"{not json",
    "deeply_nested": b"[" * 200_000 + b"]" * 200_000,
    "invalid_utf8": b'{"a": "\xff\xfe"}',
    "not_an_object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_sqlite_row_raises_state_format_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "flows.db"
    async with SQLiteFlowStore(path) as store:
        await store.create("flow-1", {"format": 1})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE qes_flows SET data = ? WHERE flow_id = ?", (DAMAGE[damage], "flow-1"))
    async with SQLiteFlowStore(path) as store:
        with pytest.raises(StateFormatError, match="flow-1") as caught:
            await store.load("flow-1")
    assert caught.value.__cause__ is None


async def test_a_damaged_text_row_raises_state_format_error(tmp_path: Path) -> None:
    path = tmp_path / "flows.db"
    async with SQLiteFlowStore(path) as store:
        await store.create("flow-2", {"format": 1})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE qes_flows SET data = CAST(? AS TEXT)", (b'{"x": "\xc3\x28"}',))
    async with SQLiteFlowStore(path) as store:
        with pytest.raises(StateFormatError, match="flow-2"):
            await store.load("flow-2")
