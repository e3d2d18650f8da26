"""The evidence record: built as the flow runs, kept with its state, and verifiable.

A whole flow with wrong passcodes and a restart leaves a record that verifies; a changed
byte, a moved entry or a changed signed file makes ``verify`` fail and name what changed;
the record never holds a passcode, the token, the client secret or the full phone number.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import register_secret, registered_secrets
from flow_helpers import MOBILE, World, world

from qes_async import (
    CallbackSigner,
    Document,
    Evidence,
    EvidenceFormatError,
    FlowOutcome,
    PasscodeRequest,
    SignatureFlow,
    SQLiteFlowStore,
    make_pdf,
)
from qes_async._cli.main import EXIT_CODES, EXIT_EVIDENCE_MISMATCH, main
from qes_async._flow import evidence as ev
from qes_async._flow.machine import Step
from qes_async._flow.state import FlowState, StateFormatError, dump_state, parse_state
from qes_async.sandbox import sandbox_ca


async def _signed_with_a_restart(w: World, **kw: Any) -> Any:
    """Three wrong passcodes (too_many_attempts: a new workflow), then the right one."""
    flow = w.flow(
        signer=w.signer(wrong=3),
        trust_roots=[sandbox_ca().certificate_der],
        expected_signer_name="Jane Doe",
        **kw,
    )
    result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    assert [g.ended for g in result.generations] == ["too_many_attempts", "signed"]
    return result


def _folder(w: World, result: Any) -> Path:
    return w.tmp / "signed" / result.flow_id


def _kinds(record: Evidence) -> list[str]:
    return [e["kind"] for e in record.entries]


def _register_flow_secrets(w: World) -> set[str]:
    passcodes = {sms.passcode for sms in w.sandbox.sms_outbox}
    tokens = set(w.sandbox.service._tokens)
    register_secret(w.sandbox.client_secret, MOBILE, *passcodes, *tokens)
    return passcodes


# ------------------------------------------------------------------------- the whole flow


async def test_a_flow_with_wrong_passcodes_and_a_restart_leaves_a_record_that_verifies(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        result = await _signed_with_a_restart(w)
        _register_flow_secrets(w)
        folder = _folder(w, result)
    record = result.evidence
    assert record is not None
    assert record.flow_id == result.flow_id
    check = record.verify(folder)
    assert check.ok, check.problems
    assert check.files_checked == 2  # the signed PDF and the InfoCert contract
    assert check.final_hash == record.entries[-1]["hash"]

    kinds = _kinds(record)
    assert kinds[0] == "flow_started"
    assert kinds[-1] == "finished"
    assert [e["seq"] for e in record.entries] == list(range(len(kinds)))
    data = [e["data"] for e in record.entries]
    started = data[0]
    assert started["documents"][0]["file_name"] == "loan.pdf"
    assert set(started["documents"][0]) == {"file_name", "display_name", "size", "sha256"}
    assert started["mobile_number"] == "+31******678"

    confirms = [d for d in data if d.get("action") == "confirm_signature"]
    assert [c["outcome"] for c in confirms] == [
        "wrong_passcode",
        "wrong_passcode",
        "too_many_attempts",
        "ok",
    ]
    assert [c.get("attempts_left") for c in confirms[:2]] == [2, 1]
    assert all(c.get("request_id") for c in confirms)
    assert confirms[-1]["attempt_id"]
    restart = data[kinds.index("restart_needed")]
    assert restart == {"reason": "too_many_attempts", "allowed": True}
    assert data[kinds.index("generation_started")] == {"number": 2, "reason": "too_many_attempts"}
    assert [e["generation"] for e in record.entries if e["kind"] == "details_shown"] == [1, 2]

    shown = data[kinds.index("details_shown")]
    uploaded = started["documents"][0]["sha256"]
    assert shown["hashes_agree"] is True
    assert shown["documents"][0]["sha256"] == uploaded
    assert all(c["text_sha256"] and c["url"] and c["title"] for c in shown["legal_conditions"])
    consent = data[kinds.index("consent")]
    assert consent["answer"] == "approved"
    assert consent["documents"][0]["sha256"] == uploaded
    assert [c["id"] for c in consent["legal_conditions_accepted"]] == [
        c["id"] for c in shown["legal_conditions"]
    ]

    statuses = [d for d in data if "status" in d and "via" in d]
    assert {"pending", "user_consent_required", "confirmation_required", "signed"} <= {
        s["status"] for s in statuses
    }
    assert all(s["via"] == "read" and s["request_id"] for s in statuses)
    actions = {d["action"] for d in data if "action" in d}
    assert actions == {
        "create_workflow",
        "upload_documents",
        "upload_mobile_number",
        "approve_documents",
        "confirm_signature",
    }

    signed = data[kinds.index("document_downloaded")]
    assert signed["sha256"] == result.documents[0].sha256
    assert signed["size"] == result.documents[0].size
    validation = signed["validation"]
    assert validation["outcome"] == "valid"
    assert validation["trusted"] is True
    assert validation["signer_name"] == "Jane Doe"
    assert "Jane Doe" in validation["cert_subject"]
    assert validation["cert_serial"]
    assert validation["issuer"]
    assert validation["signing_time"].endswith("Z")
    contract = data[kinds.index("contract_downloaded")]
    assert result.contract is not None
    assert contract["sha256"] == result.contract.sha256


async def test_the_exported_record_holds_no_secret(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await _signed_with_a_restart(w)
        passcodes = _register_flow_secrets(w)
    text = result.evidence.to_json()
    assert len(passcodes) == 2
    assert registered_secrets()
    for secret in registered_secrets():
        assert secret not in text, f"a secret of {len(secret)} chars is in the record"
    assert MOBILE[3:-3] not in text  # not even the middle of the number
    assert '"passcode' not in text
    assert '"000000"' not in text
    assert "%PDF" not in text  # no document bytes
    # and the flow's logs (checked by the autouse capture) held none of them either


async def test_a_record_read_back_from_its_json_verifies_and_equals_it(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await _signed_with_a_restart(w)
        folder = _folder(w, result)
    text = result.evidence.to_json()
    again = Evidence.from_json(text)
    assert again == result.evidence
    assert again.to_json() == text
    assert again.verify(folder).ok
    assert Evidence.from_json(text.encode("utf-8")).verify().ok


# --------------------------------------------------------------------------- tampering


async def _exported(tmp_path: Path) -> tuple[str, Path]:
    async with world(tmp_path) as w:
        result = await _signed_with_a_restart(w)
        return result.evidence.to_json(), _folder(w, result)


def _flipped(raw: bytes, at: int) -> bytes:
    old = raw[at]
    if chr(old).isdigit():
        new = ord("0") + (old - ord("0") + 1) % 10
    elif chr(old) in "abcdef":
        new = ord("a") + (old - ord("a") + 1) % 6
    elif old == ord(" "):
        new = ord("\t")
    else:
        new = old ^ 0x01
    return raw[:at] + bytes([new]) + raw[at + 1 :]


def _problems_after(raw: bytes) -> list[str]:
    try:
        record = Evidence.from_json(raw)
    except EvidenceFormatError as exc:
        return [f"unreadable: {exc}"]
    return [str(p) for p in record.verify().problems]


def test_every_single_byte_change_of_a_small_record_is_caught() -> None:
    entries: list[dict[str, Any]] = []
    ev.append_entry(entries, "flow_started", time=1.5, generation=1, data={"flow_id": "f-1"})
    ev.append_entry(
        entries,
        "status_observed",
        time=2.25,
        generation=1,
        data={"status": "pending", "status_code": 1001, "via": "read", "ok": True},
    )
    ev.append_entry(entries, "finished", time=3.0, generation=1, data={"outcome": "signed"})
    raw = Evidence("f-1", entries).to_json().encode("utf-8")
    assert Evidence.from_json(raw).verify().ok
    missed = [at for at in range(len(raw)) if not _problems_after(_flipped(raw, at))]
    assert missed == [], f"changes at bytes {missed[:10]} went unseen"


async def test_a_byte_change_anywhere_in_a_real_record_is_caught(tmp_path: Path) -> None:
    text, _ = await _exported(tmp_path)
    raw = text.encode("utf-8")
    positions = range(0, len(raw), max(1, len(raw) // 1500))
    missed = [at for at in positions if not _problems_after(_flipped(raw, at))]
    assert missed == [], f"changes at bytes {missed[:10]} went unseen"


async def test_a_changed_value_names_its_entry_and_only_it(tmp_path: Path) -> None:
    text, _ = await _exported(tmp_path)
    data = json.loads(text)
    n = next(i for i, e in enumerate(data["entries"]) if e["kind"] == "status_observed")
    data["entries"][n]["data"]["status"] = "signed"
    record = Evidence.from_json(ev._export(data))
    problems = record.verify().problems
    assert [p.where for p in problems] == [f"entry {n} (status_observed)"]
    assert "does not match its hash" in problems[0].detail


async def test_a_whitespace_change_is_named_by_its_byte(tmp_path: Path) -> None:
    text, _ = await _exported(tmp_path)
    changed = text.replace('\n  "final_hash"', '\n   "final_hash"', 1)
    problems = Evidence.from_json(changed).verify().problems
    assert [p.where for p in problems] == ["record"]
    at = changed.encode("utf-8").index(b'   "final_hash"') + 2
    assert f"byte {at} " in problems[0].detail


async def test_swapped_removed_and_cut_entries_are_named(tmp_path: Path) -> None:
    text, _ = await _exported(tmp_path)
    data = json.loads(text)
    entries = data["entries"]

    swapped = dict(data, entries=[*entries[:4], entries[5], entries[4], *entries[6:]])
    wheres = {
        p.where.split(" (")[0] for p in Evidence.from_json(ev._export(swapped)).verify().problems
    }
    assert wheres == {"entry 4", "entry 5", "entry 6"}

    removed = dict(data, entries=[*entries[:7], *entries[8:]])
    problems = Evidence.from_json(ev._export(removed)).verify().problems
    assert problems
    assert all(p.where.startswith("entry ") for p in problems)
    assert problems[0].where.startswith("entry 7 ")

    cut = dict(data, entries=entries[:-2])  # the tail dropped, final_hash kept
    problems = Evidence.from_json(ev._export(cut)).verify().problems
    assert [p.where for p in problems] == ["final_hash"]

    other = dict(data, flow_id="someone-else")
    problems = Evidence.from_json(ev._export(other)).verify().problems
    assert [p.where for p in problems] == ["flow_id"]


async def test_a_changed_or_missing_signed_file_is_named(tmp_path: Path) -> None:
    text, folder = await _exported(tmp_path)
    record = Evidence.from_json(text)
    assert record.verify(folder).ok
    pdf = folder / "loan.pdf"
    body = bytearray(pdf.read_bytes())
    body[len(body) // 2] ^= 0x01
    pdf.write_bytes(bytes(body))
    problems = record.verify(folder).problems
    assert [p.where for p in problems] == ["file loan.pdf"]
    assert "SHA-256" in problems[0].detail
    assert "document_downloaded" in problems[0].detail

    pdf.write_bytes(bytes(body) + b"\n")
    assert {p.detail.split(",")[0] for p in record.verify(folder).problems} >= {
        f"is {len(body) + 1} bytes"
    }

    contract = next(folder.glob("*-infocert-contract.pdf"))
    contract.unlink()
    wheres = [p.where for p in record.verify(folder).problems]
    assert f"file {contract.name}" in wheres
    assert "file loan.pdf" in wheres


def test_unreadable_records_are_refused_with_where() -> None:
    with pytest.raises(EvidenceFormatError, match=r"not JSON \(line 1"):
        Evidence.from_json("{")
    with pytest.raises(EvidenceFormatError, match="format 'qes-async-evidence/9'"):
        Evidence.from_json(
            json.dumps(
                {"format": "qes-async-evidence/9", "flow_id": "f", "entries": [], "final_hash": ""}
            )
        )
    bad = {"format": ev.EVIDENCE_FORMAT, "flow_id": "f", "final_hash": "", "entries": [{"seq": 0}]}
    with pytest.raises(EvidenceFormatError, match="entry 0 has unknown fields"):
        Evidence.from_json(json.dumps(bad))


# ----------------------------------------------------------------- canonical form, cost


def test_the_canonical_form_sorts_keys_keeps_utf8_and_refuses_floats() -> None:
    assert ev.canonical_json({"b": 1, "a": "é", "c": [True, None]}) == (
        '{"a":"é","b":1,"c":[true,null]}'.encode()
    )
    with pytest.raises(TypeError, match=r"no floats \(\$\.x\[0\]\)"):
        ev.canonical_json({"x": [1.5]})
    assert ev.instant(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
    entries: list[dict[str, Any]] = []
    first = ev.append_entry(entries, "a", time=0, generation=1, data={"k": None, "v": 2})
    assert first["prev"] == ev.GENESIS
    assert first["data"] == {"v": 2}
    second = ev.append_entry(entries, "b", time=0, generation=1, data={})
    assert second["prev"] == first["hash"]
    assert second["seq"] == 1


async def test_each_entry_is_hashed_once_however_often_the_flow_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = ev._digest

    def counting(value: bytes) -> str:
        calls.append(1)
        return original(value)

    monkeypatch.setattr(ev, "_digest", counting)
    saves = 0
    async with world(tmp_path) as w:
        flow = w.flow(signer=w.signer(wrong=3))
        save = flow.save

        async def counted() -> None:
            nonlocal saves
            saves += 1
            await save()

        flow.save = counted  # type: ignore[method-assign]
        result = await flow.run()
    assert len(calls) == len(result.evidence)
    assert saves > 10


# -------------------------------------------------------------------- stores and resume


def test_a_state_stored_before_the_evidence_still_loads() -> None:
    state = FlowState("f-1", "client-1", MOBILE, [], 0.0)
    data = dump_state(state)
    assert data.pop("evidence") == []
    assert parse_state(json.dumps(data)).evidence == []


class _CrashAtPasscode:
    """A signer whose worker dies (its task is cancelled) when the passcode is asked."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None

    def signer(self, w: World) -> CallbackSigner:
        async def passcode(request: PasscodeRequest) -> str:
            assert self.task is not None
            self.task.cancel()
            await asyncio.sleep(0)
            raise AssertionError("unreachable")

        return CallbackSigner(consent=lambda request: True, passcode=passcode)


async def test_a_flow_resumed_by_another_worker_continues_the_same_chain(tmp_path: Path) -> None:
    async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
        crash = _CrashAtPasscode()
        first = w.flow(store=db, signer=crash.signer(w))
        crash.task = asyncio.ensure_future(first.run())
        with pytest.raises(asyncio.CancelledError):
            await crash.task
        before = parse_state((await db.load(first.flow_id)).data).evidence
        assert before
        assert before[-1]["kind"] == "status_observed"
        again = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
        resumed = await SignatureFlow.resume(first.flow_id, **w.resume_kw(db, documents=again))
        result = await resumed.run()
        folder = _folder(w, result)
        stored = parse_state((await db.load(first.flow_id)).data)
    record = result.evidence
    assert list(record.entries[: len(before)]) == before
    assert record.entries[len(before)]["kind"] == "resumed"
    assert record.entries[len(before)]["prev"] == before[-1]["hash"]
    assert record.verify(folder).ok
    assert Evidence(stored.flow_id, stored.evidence) == record


# -------------------------------------------------------------------------------- CLI


def _flow_in_sqlite(tmp_path: Path) -> tuple[str, Path]:
    async def run() -> tuple[str, Path]:
        async with world(tmp_path) as w, SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
            result = await _signed_with_a_restart(w, store=db)
            return result.flow_id, _folder(w, result)

    return asyncio.run(run())


def test_cli_exports_a_stored_record_and_verifies_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow_id, folder = _flow_in_sqlite(tmp_path)
    out = tmp_path / "evidence.json"
    store = str(tmp_path / "f.db")
    assert main(["evidence", flow_id, "--store", store, "--output", str(out)]) == 0
    assert main(["evidence", flow_id, "--store", store]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert main(["evidence", "--verify", str(out), "--documents", str(folder)]) == 0
    assert "verifies" in capsys.readouterr().out

    (folder / "loan.pdf").write_bytes(b"%PDF-1.7 not the signed one")
    code = main(["evidence", "--verify", str(out), "--documents", str(folder)])
    err = capsys.readouterr().err
    assert code == EXIT_EVIDENCE_MISMATCH
    assert "file loan.pdf: its SHA-256" in err

    text = out.read_text(encoding="utf-8")
    out.write_text(text.replace('"kind": "consent"', '"kind": "consenT"', 1), encoding="utf-8")
    assert main(["evidence", "--verify", str(out), "--json"]) == EXIT_EVIDENCE_MISMATCH
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert next(p["where"] for p in report["problems"]).endswith("(consenT)")

    out.write_text(text[:-10], encoding="utf-8")
    assert main(["evidence", "--verify", str(out)]) == EXIT_EVIDENCE_MISMATCH
    assert "not JSON" in capsys.readouterr().err


def test_cli_evidence_refuses_bad_command_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence"]) == 2
    assert "give a FLOW_ID" in capsys.readouterr().err
    assert main(["evidence", "f", "--verify", "x.json"]) == 2
    assert main(["evidence", "--verify", str(tmp_path / "none.json")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["evidence", "f", "--store", str(tmp_path / "none.db")]) == 2
    _flow_id, _ = _flow_in_sqlite(tmp_path)
    assert main(["evidence", "nope", "--store", str(tmp_path / "f.db")]) == 2
    assert "there is no flow 'nope'" in capsys.readouterr().err
    assert EXIT_EVIDENCE_MISMATCH in EXIT_CODES


def test_the_demo_writes_a_record_that_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--scenario", "wrong-passcode", "--output", str(tmp_path)]) == 0
    (record,) = tmp_path.glob("*/evidence.json")
    assert "evidence record" in capsys.readouterr().out
    assert main(["evidence", "--verify", str(record), "--documents", str(record.parent)]) == 0
    data = json.loads(record.read_text(encoding="utf-8"))
    outcomes = [e["data"].get("outcome") for e in data["entries"] if e["kind"] == "action"]
    assert "wrong_passcode" in outcomes
    assert "+31612345678" not in record.read_text(encoding="utf-8")


async def resumed_chain_through(store: Any, w: World) -> None:
    """A flow stopped at the passcode, resumed from ``store`` by a second flow object (as
    another worker would): the stored record carries on as one chain that verifies."""
    crash = _CrashAtPasscode()
    documents = [Document.from_bytes("loan.pdf", make_pdf("Loan"))]
    first = w.flow(store=store, signer=crash.signer(w), documents=documents)
    crash.task = asyncio.ensure_future(first.run())
    with pytest.raises(asyncio.CancelledError):
        await crash.task
    before = parse_state((await store.load(first.flow_id)).data).evidence
    assert before
    resumed = await SignatureFlow.resume(first.flow_id, **w.resume_kw(store, documents=documents))
    result = await resumed.run()
    stored = parse_state((await store.load(first.flow_id)).data)
    record = Evidence(stored.flow_id, stored.evidence)
    assert record == result.evidence
    assert list(record.entries[: len(before)]) == before
    assert record.verify(_folder(w, result)).ok


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_the_stores_keep_the_record_and_a_resume_continues_it(
    tmp_path: Path, kind: str
) -> None:
    from qes_async import MemoryFlowStore

    async with world(tmp_path) as w:
        if kind == "memory":
            await resumed_chain_through(MemoryFlowStore(clock=w.clock), w)
        else:
            async with SQLiteFlowStore(tmp_path / "f.db", clock=w.clock) as db:
                await resumed_chain_through(db, w)


async def test_a_declined_flow_records_the_refusal(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await w.flow(signer=w.signer(approve=False)).run()
    assert result.outcome is FlowOutcome.DECLINED
    record = result.evidence
    assert record.verify().ok
    consent = next(e["data"] for e in record.entries if e["kind"] == "consent")
    assert consent == {"answer": "declined"}
    assert record.entries[-1]["data"] == {"outcome": "declined"}
    assert "approve_documents" not in record.to_json()


async def test_statuses_read_after_a_webhook_say_so(tmp_path: Path) -> None:
    from qes_async._cli.demo import run_demo

    outcome, result, _ = await run_demo(
        "happy", webhooks=True, out_dir=tmp_path, out=lambda line: None
    )
    assert outcome is FlowOutcome.SIGNED
    assert result is not None
    vias = [e["data"]["via"] for e in result.evidence.entries if e["kind"] == "status_observed"]
    assert "webhook" in vias
    assert (tmp_path / result.flow_id / "evidence.json").read_text(encoding="utf-8") == (
        result.evidence.to_json()
    )


async def test_changing_a_result_record_leaves_the_flow_state_alone(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = w.flow()
        result = await flow.run()
    result.evidence.entries[0]["data"]["flow_id"] = "changed"
    assert flow.state is not None
    assert flow.state.evidence[0]["data"]["flow_id"] == result.flow_id
    assert flow.evidence is not None
    assert flow.evidence.verify().ok
    assert not result.evidence.verify().ok


async def test_a_result_record_is_read_back_from_the_last_checkpoint_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The result's copy of the record comes from the last checkpoint's text (the C
    # parser), not from a Python walk of every entry: the old code called _copy_json on
    # each value of each entry here.
    walked: list[object] = []
    real = ev._copy_json
    monkeypatch.setattr(ev, "_copy_json", lambda value: walked.append(value) or real(value))
    async with world(tmp_path) as w:
        flow = w.flow()
        result = await flow.run()
    assert walked == []
    assert flow.state is not None
    assert list(result.evidence.entries) == flow.state.evidence
    assert result.evidence.verify().ok
    assert result.evidence.final_hash == flow.state.evidence[-1]["hash"]
    shared = {id(e) for e in flow.state.evidence} | {id(e["data"]) for e in flow.state.evidence}
    assert not any(id(e) in shared or id(e["data"]) in shared for e in result.evidence.entries)


def test_a_record_of_a_flows_entries_holds_their_text_and_decodes_fresh_dicts_once() -> None:
    from qes_async._flow.state import StateEncoder

    state = FlowState("flow-1", "client-1", MOBILE, [], 1_700_000_000.0)
    ev.append_entry(state.evidence, "flow_started", time=1.0, generation=0, data={"n": 1})
    StateEncoder().text(state)  # the first entry now held as the checkpoint's text
    ev.append_entry(state.evidence, "two", time=2.0, generation=0, data={"n": 2})
    record = ev.Evidence("flow-1", state.evidence)
    assert type(record._text) is str  # nothing decoded yet
    assert len(record) == 2
    assert record.final_hash == state.evidence[-1]["hash"]
    assert "Evidence(flow_id='flow-1', entries=2, " in repr(record)
    entries = record.entries
    assert record._text is None  # decoded once, then kept
    assert record.entries is entries
    assert list(entries) == list(state.evidence)
    entries[0]["data"]["n"] = 99  # its dicts are its own: the flow's state is unchanged
    assert state.evidence[0]["data"]["n"] == 1
    assert record != ev.Evidence("flow-1", state.evidence)  # the change is the record's alone
    plain = ev.Evidence("flow-1", list(state.evidence))
    assert ev.Evidence("flow-1", state.evidence) == plain
    assert ev.Evidence("flow-1", state.evidence).verify().ok == plain.verify().ok


def test_an_entry_with_a_float_or_an_object_is_refused_naming_where() -> None:
    entries: list[dict[str, Any]] = []
    with pytest.raises(TypeError, match=r"no floats \(\$\.data\.terms\[1\]\.rate\)"):
        ev.append_entry(
            entries, "a", time=0, generation=1, data={"terms": ({"n": 1}, {"rate": 1.5})}
        )
    with pytest.raises(TypeError, match=r"only JSON values \(\$\.data\.when: object\)"):
        ev.append_entry(entries, "a", time=0, generation=1, data={"when": object()})
    assert entries == []  # nothing chained
    enum_like = ev.append_entry(entries, "a", time=0, generation=1, data={"s": Step.PASSCODE})
    assert type(enum_like["data"]["s"]) is str
    assert enum_like["hash"] == ev.entry_hash(enum_like)


# ------------------------------------------- the record as a flow state holds it: as text


def _entries(n: int) -> ev.EvidenceEntries:
    entries = ev.EvidenceEntries()
    for k in range(n):
        ev.append_entry(entries, f"k{k}", time=float(k), generation=1, data={"n": k, "u": "é"})
    return entries


def test_a_flow_state_holds_its_entries_as_text_and_reads_them_as_dicts() -> None:
    state = FlowState("flow-1", "client-1", MOBILE, [], 1_700_000_000.0)
    assert type(state.evidence) is ev.EvidenceEntries
    plain: list[dict[str, Any]] = []
    for n in range(3):
        for entries in (state.evidence, plain):
            ev.append_entry(entries, "note", time=float(n), generation=1, data={"n": n, "u": "é"})
    assert state.evidence == plain
    assert plain == state.evidence
    assert list(state.evidence) == plain
    assert len(state.evidence) == 3
    assert state.evidence[-1] == plain[-1]
    assert state.evidence[1:] == plain[1:]
    assert list(reversed(state.evidence)) == plain[::-1]
    # (its dicts have their keys in sorted order, as a resumed flow's always had)
    assert repr(state.evidence) == repr([dict(sorted(e.items())) for e in plain])
    assert state.evidence.last_hash() == plain[-1]["hash"]
    # One text per entry, non-ASCII escaped as a checkpoint writes it; no dict is kept.
    joined = state.evidence.joined()
    assert joined.isascii()
    assert joined == ",".join(json.dumps(e, separators=(",", ":"), sort_keys=True) for e in plain)
    assert ev.Evidence("flow-1", state.evidence) == ev.Evidence("flow-1", plain)


def test_a_dict_read_from_the_record_is_a_copy_and_an_assigned_entry_is_kept() -> None:
    entries = _entries(3)
    entries[0]["kind"] = "changed"
    assert entries[0]["kind"] == "k0"
    first = entries[0]
    first["kind"] = "changed"
    entries[0] = first
    assert entries[0]["kind"] == "changed"
    assert not ev.Evidence("f", entries).verify().ok  # the chain shows it, as it should


def test_the_record_changes_as_a_list_does() -> None:
    entries, model = _entries(4), list(_entries(4))
    for change in (
        lambda e: e.append({"seq": 9, "hash": "h"}),
        lambda e: e.insert(1, {"x": [1, 2]}),
        lambda e: e.__delitem__(2),
        lambda e: e.__setitem__(slice(0, 2), [{"a": None}]),
        lambda e: e.extend([{"b": True}, {"hash": "last"}]),
        lambda e: e.pop(0),
        lambda e: e.reverse(),
        lambda e: e.remove({"b": True}),
    ):
        change(entries)
        change(model)
        assert list(entries) == model
        assert len(entries) == len(model)
    assert entries.last_hash() == model[-1]["hash"]
    entries.append({"no": "hash"})
    with pytest.raises(KeyError):
        ev.append_entry(entries, "next", time=0, generation=1, data={})
    entries.clear()
    assert entries == []
    assert entries.last_hash() == ev.GENESIS


def test_a_value_a_checkpoint_cannot_hold_is_refused_when_appended() -> None:
    entries = _entries(1)
    with pytest.raises(TypeError):
        entries.append({"x": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not JSON compliant"):
        entries.append({"x": float("nan")})
    assert len(entries) == 1  # nothing was kept of either


def test_a_checkpoint_splices_the_entries_text_and_they_are_then_held_as_its_text() -> None:
    from qes_async._flow.state import StateEncoder

    state = FlowState("flow-1", "client-1", MOBILE, [], 1_700_000_000.0)
    ev.append_entry(state.evidence, "flow_started", time=1.0, generation=1, data={"n": 1})
    encoder = StateEncoder()
    text = encoder.text(state)
    assert state.evidence._text is text  # the checkpoint's own string, no copy of it
    assert state.evidence.checkpointed()
    ev.append_entry(state.evidence, "later", time=2.0, generation=1, data={"m": "ü"})
    assert not state.evidence.checkpointed()
    second = encoder.text(state)
    assert second == json.dumps(dump_state(state), separators=(",", ":"), sort_keys=True)
    assert state.evidence._text is second
    assert parse_state(second) == state


def test_a_stored_state_is_read_back_into_a_record_held_as_text() -> None:
    state = FlowState("flow-1", "client-1", MOBILE, [], 1_700_000_000.0)
    for n in range(2):
        ev.append_entry(state.evidence, "note", time=float(n), generation=1, data={"n": n})
    data = dump_state(state)
    assert type(data["evidence"]) is list
    assert data["evidence"] == list(state.evidence)
    back = parse_state(json.dumps(data))
    assert type(back.evidence) is ev.EvidenceEntries
    assert back == state
    assert back.evidence.last_hash() == state.evidence.last_hash()
    del data["evidence"]  # a state stored before the record existed
    old = parse_state(data)
    assert type(old.evidence) is ev.EvidenceEntries
    assert len(old.evidence) == 0
    for bad in (5, ["x"], [{"a": 1}, 3]):
        with pytest.raises(StateFormatError, match="evidence"):
            parse_state({**data, "evidence": bad})


async def test_a_parked_flows_record_is_the_stored_checkpoints_own_text(tmp_path: Path) -> None:
    from qes_async import MemoryFlowStore

    async with world(tmp_path) as w:
        store = MemoryFlowStore(clock=w.clock)
        flow = w.flow(store=store)
        result = await flow.run()
        assert flow.state is not None
        held = flow.state.evidence
        assert type(held) is ev.EvidenceEntries
        assert held.checkpointed()
        assert held._text is store._row(result.flow_id).text
        assert list(held) == list(result.evidence.entries)


def test_a_held_record_copies_and_pickles_as_the_entries_it_holds() -> None:
    import copy
    import pickle

    entries = _entries(3)
    for other in (copy.copy(entries), copy.deepcopy(entries), pickle.loads(pickle.dumps(entries))):
        assert type(other) is ev.EvidenceEntries
        assert other == entries
        assert other.last_hash() == entries.last_hash()
        ev.append_entry(other, "more", time=9.0, generation=1, data={})
        assert len(other) == 4
        assert len(entries) == 3


def test_the_record_finds_its_last_hash_in_its_text_and_holds_no_copy_of_it() -> None:
    from qes_async._flow.state import StateEncoder

    state = FlowState("flow-1", "client-1", MOBILE, [], 1_700_000_000.0)
    plain: list[dict[str, Any]] = []
    awkward = {"hash": "x" * 64, "list": [{"hash": "y"}], "quote": '"hash":"' + "z" * 64}
    for n, kind in enumerate(("flow_started", 'a "hash":"kind', "é")):
        for entries in (state.evidence, plain):
            ev.append_entry(entries, kind, time=float(n), generation=1, data=awkward)
        assert state.evidence._last is ev._IN_TEXT  # not held: found in the text
        assert state.evidence.last_hash() == plain[-1]["hash"]
        StateEncoder().text(state)  # and again once it is the checkpoint's text
        assert state.evidence.last_hash() == plain[-1]["hash"]
    assert state.evidence == plain
    assert [p.where for p in ev.Evidence("flow-1", state.evidence).verify().problems] == ["flow_id"]
