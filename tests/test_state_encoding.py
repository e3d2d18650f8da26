"""A checkpoint's hand-built data and text are exactly what cattrs and ``json.dumps`` give.

The flow saves its state at every step through :class:`StateEncoder` (no cattrs, each
evidence entry encoded once); :func:`dump_state` (cattrs) stays the reference. A field
added to a record and not to the hand-built path fails here.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from flow_helpers import world

from qes_async import FlowOutcome, MemoryFlowStore
from qes_async._flow.evidence import append_entry
from qes_async._flow.machine import Step
from qes_async._flow.state import (
    DocumentRecord,
    DownloadRecord,
    EncodedState,
    FlowState,
    Generation,
    StateEncoder,
    dump_state,
    fast_dump,
    parse_state,
)


def _reference_text(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _full_state() -> FlowState:
    """A state with every optional field set, nested values included."""
    state = FlowState(
        "flow-1",
        "client-1",
        "+31612345678",
        [DocumentRecord("a.pdf", "ab" * 32, 10, "A", "/tmp/a.pdf"), DocumentRecord("b", "cd", 2)],
        1.5,
        step=Step.PASSCODE,
        outcome="failed",
        error={"kind": "X", "nested": {"list": [1, {"deep": None}], "n": 2.5}},
        updated_at=9.25,
        workflow_name="other",
    )
    state.generations = [
        Generation(1, 2.0, ended="expired", ended_at=3.0),
        Generation(
            2,
            4.0,
            reason="consent_expired",
            signature_id="sig-2",
            in_flight="confirm",
            documents_uploaded=True,
            document_ids=["d1", "d2"],
            approvals_sent=1,
            confirmations_sent=2,
            unconfirmed_creates=1,
            deadlines={"consent": 100.0, "confirmation": 200.5},
            last_status="confirmation_required",
            last_status_code=3400,
        ),
    ]
    state.downloads = [DownloadRecord("d1", "/x/d1.pdf", "ef", 5, "valid", "ok", "Jan Jansen")]
    state.contract = DownloadRecord("infocert-contract", "/x/c.pdf", "01", 3)
    for n in range(3):
        append_entry(state.evidence, "note", time=float(n), generation=2, data={"n": n, "u": "é"})
    return state


def test_fast_dump_is_what_cattrs_gives_for_a_full_state() -> None:
    state = _full_state()
    assert fast_dump(state) == dump_state(state)


def test_fast_dump_is_what_cattrs_gives_for_a_new_state() -> None:
    state = FlowState("flow-2", "c", "+31612345678", [], 0.0)
    assert fast_dump(state) == dump_state(state)


def test_the_encoded_text_is_the_reference_text() -> None:
    state = _full_state()
    encoded = StateEncoder().encode(state)
    assert isinstance(encoded, EncodedState)
    assert dict(encoded) == dump_state(state)
    assert encoded.text == _reference_text(dump_state(state))


def test_entries_added_between_checkpoints_are_encoded_too() -> None:
    state, encoder = _full_state(), StateEncoder()
    encoder.encode(state)
    append_entry(state.evidence, "later", time=5.0, generation=2, data={"x": [1, 2]})
    state.step = Step.AWAIT_SIGNED
    assert encoder.encode(state).text == _reference_text(dump_state(state))


def test_a_replaced_evidence_list_is_encoded_afresh() -> None:
    state, encoder = _full_state(), StateEncoder()
    encoder.encode(state)
    other = _full_state()
    other.evidence = other.evidence[:1]
    append_entry(other.evidence, "different", time=7.0, generation=1, data={"y": 1})
    assert encoder.encode(other).text == _reference_text(dump_state(other))


def test_a_checkpoint_shares_no_list_with_the_state() -> None:
    state = _full_state()
    encoded = StateEncoder().encode(state)
    state.evidence.append({"seq": 99})
    state.generations[1].document_ids.append("d3")
    state.generations[1].deadlines["selfie"] = 1.0
    assert len(encoded["evidence"]) == 3
    assert encoded["generations"][1]["document_ids"] == ["d1", "d2"]
    assert "selfie" not in encoded["generations"][1]["deadlines"]


class _Recording(MemoryFlowStore):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.saved: list[Any] = []

    async def create(self, flow_id: str, data: Any, **kw: Any) -> int:
        self.saved.append(data)
        return await super().create(flow_id, data, **kw)

    async def save(self, flow_id: str, data: Any, **kw: Any) -> int:
        self.saved.append(data)
        return await super().save(flow_id, data, **kw)


async def test_every_checkpoint_of_a_real_flow_matches_cattrs(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        store = _Recording(clock=w.clock)
        await w.flow(store=store).run()
    assert len(store.saved) > 10
    for data in store.saved:
        state = parse_state(dict(data))
        assert dict(data) == dump_state(state)
        assert data.text == _reference_text(dump_state(state))
    stored = await store.load(store.saved[0]["flow_id"])
    assert stored.data == dict(store.saved[-1])


async def _checkpoint_tasks(tmp_path: Path, make_store: Any) -> int:
    loop = asyncio.get_running_loop()
    names: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        names.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kw)

    async with world(tmp_path) as w:
        store = make_store(clock=w.clock)
        loop.set_task_factory(factory)
        try:
            result = await w.flow(store=store).run()
        finally:
            loop.set_task_factory(None)
    assert result.outcome is FlowOutcome.SIGNED
    return len([n for n in names if n.endswith("._checkpoint")])


async def test_a_checkpoint_to_the_memory_store_makes_no_task_of_its_own(
    tmp_path: Path,
) -> None:
    # The in-memory store never suspends, so the shielded task that sees a checkpoint
    # through a cancellation (a loop iteration per save) is not needed there.
    assert await _checkpoint_tasks(tmp_path / "a", MemoryFlowStore) == 0
    # The control: any other store (here a subclass that may suspend) keeps the task.
    assert await _checkpoint_tasks(tmp_path / "b", _Recording) > 10


# ------------------------------------------------- the text written from the records alone


def _odd_state() -> FlowState:
    """Non-ASCII and escaped names, floats of every spelling, ints where floats are kept,
    None everywhere it may be, empty lists and dicts."""
    state = FlowState(
        "flöw-\u2603",
        'quote " back \\ slash \n tab \t \x00 \ud800',
        "+31612345678",
        [DocumentRecord("Überweisung €.pdf", "ab", 0, None, None)],
        0,  # an int where a float is kept: written as the int it is
        outcome=None,
        error={"é": [None, True, 1.5, {"z": -0.0, "a": 1e300}], "b": []},
        updated_at=5e-324,
        workflow_name="",
    )
    state.generations = [
        Generation(1, 0.1, deadlines={}, document_ids=[]),
        Generation(
            2, 1e16, reason="ü", in_flight_at=-1.5e-7, deadlines={"selfie": 3, "consent": 2.5}
        ),
    ]
    state.downloads = [DownloadRecord("d", "/ü/d.pdf", "ef", 2**70, signer="Jöhn Ðoe")]
    append_entry(state.evidence, "note", time=1.0, generation=1, data={"name": "Jöhn"})
    return state


def test_the_text_of_odd_values_is_the_reference_text() -> None:
    state = _odd_state()
    text = StateEncoder().text(state)
    assert text == _reference_text(dump_state(state))
    assert text.isascii()
    assert parse_state(text) == state


def test_the_text_of_a_new_state_is_the_reference_text() -> None:
    state = FlowState("flow-2", "c", "+31612345678", [], 0.0)
    assert StateEncoder().text(state) == _reference_text(dump_state(state))


def test_values_of_other_types_are_written_as_the_reference_writes_them() -> None:
    import enum

    class Size(enum.IntEnum):
        TEN = 10

    class Name(str, enum.Enum):
        A = "ä"

    state = _full_state()
    state.documents[0].size = Size.TEN
    state.documents[0].display_name = Name.A
    state.generations[0].document_ids = ("x", "y")  # type: ignore[assignment]
    state.generations[0].deadlines = {"consent": True}  # type: ignore[dict-item]
    state.generations[1].approvals_sent = False  # type: ignore[assignment]
    assert StateEncoder().text(state) == _reference_text(dump_state(state))


def test_a_float_json_cannot_hold_is_refused_as_before() -> None:
    import re

    import pytest

    for bad in (float("nan"), float("inf"), float("-inf")):
        state = _full_state()
        state.generations[1].deadlines["selfie"] = bad
        with pytest.raises(ValueError, match="not JSON compliant") as reference:
            _reference_text(dump_state(state))
        with pytest.raises(ValueError, match=re.escape(str(reference.value))):
            StateEncoder().text(state)


def test_successive_texts_reuse_the_last_ones_entries_and_stay_the_reference() -> None:
    state, encoder = _full_state(), StateEncoder()
    for n in range(4):
        for _ in range(n):  # none, one, then several entries between checkpoints
            append_entry(state.evidence, "later", time=5.0 + n, generation=2, data={"n": n})
        state.updated_at = float(n)
        assert encoder.text(state) == _reference_text(dump_state(state))
    state.evidence = state.evidence[:2]  # a shorter list: encoded afresh
    assert encoder.text(state) == _reference_text(dump_state(state))


def test_the_text_and_the_data_paths_may_alternate_on_one_encoder() -> None:
    state, encoder = _full_state(), StateEncoder()
    for n in range(4):
        append_entry(state.evidence, "x", time=float(n), generation=2, data={"n": n})
        got = encoder.text(state) if n % 2 else encoder.encode(state).text
        assert got == _reference_text(dump_state(state))


def test_a_state_text_reads_as_its_data_and_never_shows_it() -> None:
    from qes_async._flow.state import StateText

    state = _full_state()
    data = StateText(StateEncoder().text(state))
    assert dict(data) == dump_state(state)
    assert data["mobile_number"] == "+31612345678"
    assert len(data) == len(dump_state(state))
    assert "3161" not in repr(data)


class _Declaring(_Recording):
    _checkpoint_text = True  # declared again: this subclass takes the text


def test_the_text_goes_to_stores_that_declare_it_and_the_data_to_the_others(
    tmp_path: Path,
) -> None:
    from qes_async import SQLiteFlowStore
    from qes_async._flow.state import StateText
    from qes_async.postgres import PostgresFlowStore

    state = _full_state()
    reference = _reference_text(dump_state(state))
    for store in (
        MemoryFlowStore(),
        SQLiteFlowStore(tmp_path / "s.db"),
        PostgresFlowStore(""),
        _Declaring(),
    ):
        got = StateEncoder().checkpoint(state, store)
        assert type(got) is StateText, store
        assert got.text == reference
    # Not declared in its own class body (only inherited): a user's subclass that may read
    # the data, so it gets the dict.
    for other in (_Recording(), object()):
        got = StateEncoder().checkpoint(state, other)
        assert type(got) is EncodedState
        assert dict(got) == dump_state(state)
        assert got.text == reference


async def test_a_real_flows_store_gets_the_text_only(tmp_path: Path, monkeypatch: Any) -> None:
    from qes_async._flow.state import StateText

    got: list[Any] = []
    real_save, real_create = MemoryFlowStore.save, MemoryFlowStore.create

    async def save(self: MemoryFlowStore, flow_id: str, data: Any, **kw: Any) -> int:
        got.append(data)
        return await real_save(self, flow_id, data, **kw)

    async def create(self: MemoryFlowStore, flow_id: str, data: Any, **kw: Any) -> int:
        got.append(data)
        return await real_create(self, flow_id, data, **kw)

    monkeypatch.setattr(MemoryFlowStore, "save", save)
    monkeypatch.setattr(MemoryFlowStore, "create", create)
    async with world(tmp_path) as w:
        store = MemoryFlowStore(clock=w.clock)
        result = await w.flow(store=store).run()
    assert result.outcome is FlowOutcome.SIGNED
    assert len(got) > 10
    assert all(type(data) is StateText for data in got)
    for data in got:
        assert data.text == _reference_text(dump_state(parse_state(data.text)))
    stored = await store.load(got[0]["flow_id"])
    assert stored.data == json.loads(got[-1].text)
