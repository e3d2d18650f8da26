"""The chaos run's duplicate count, on request logs made by hand: it counts what reached
the service, whatever the service answered, and excuses only what a ceremony needs."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from chaos._checks import count_duplicates, reached_logic
from qes_async.sandbox._model import RequestRecord


def _r(
    route: str,
    sid: str | None,
    status: int = 200,
    *,
    fault: str | None = None,
    reference: str | None = None,
    processed: bool = True,
) -> RequestRecord:
    return RequestRecord(
        method="POST",
        route=route,
        path=f"/x/{sid}",
        status=status,
        time=0.0,
        signature_id=sid,
        processed=processed,
        fault=fault,
        request_id="r",
        client_reference=reference,
    )


def _sandbox(log: list[RequestRecord], signed: dict[str, str] | None = None) -> object:
    signatures = {
        sid: SimpleNamespace(client_reference=ref, status="signed")
        for sid, ref in (signed or {}).items()
    }
    return SimpleNamespace(request_log=log, service=SimpleNamespace(signatures=signatures))


def _ceremony(sid: str, reference: str) -> list[RequestRecord]:
    return [
        _r("create_workflow", sid, 201, reference=reference),
        _r("upload_documents", sid, 204),
        _r("upload_mobile_number", sid, 204),
        _r("get_signature_details", sid),
        _r("approve_documents", sid),
        _r("confirm_signature", sid),
    ]


def test_one_clean_ceremony_has_no_duplicate() -> None:
    count = count_duplicates(_sandbox(_ceremony("s1", "c1"), {"s1": "c1"}), Counter(s1=1))
    assert (count.total, count.details) == (0, [])


def test_repeats_refused_with_409_still_count() -> None:
    """The old count read only calls the sandbox marked processed: these stayed at 0."""
    log = _ceremony("s1", "c1")
    log += [
        _r("approve_documents", "s1", 409, processed=False),
        _r("confirm_signature", "s1", 409, processed=False),
        _r("upload_documents", "s1", 409, processed=False),
        _r("upload_selfie", "s1", 204),
        _r("upload_selfie", "s1", 409, processed=False),
    ]
    count = count_duplicates(_sandbox(log, {"s1": "c1"}), Counter(s1=1))
    assert count.total == 4
    assert count.by_route == Counter(
        approve_documents=1, confirm_signature=1, upload_documents=1, upload_selfie=1
    )


def test_a_confirmation_per_typed_passcode_is_needed_not_more() -> None:
    log = [*_ceremony("s1", "c1"), _r("confirm_signature", "s1", 409, processed=False)]
    assert count_duplicates(_sandbox(log, {"s1": "c1"}), Counter(s1=2)).total == 0
    assert count_duplicates(_sandbox(log, {"s1": "c1"}), Counter(s1=1)).total == 1


def test_calls_refused_before_the_logic_do_not_count() -> None:
    log = _ceremony("s1", "c1")
    log += [
        _r("approve_documents", "s1", 503, fault="server_error", processed=False),
        _r("approve_documents", "s1", 429, fault="rate_limit", processed=False),
        _r("approve_documents", "s1", 0, fault="drop_before", processed=False),
        _r("approve_documents", "s1", 401, processed=False),
    ]
    assert not any(reached_logic(r) for r in log[-4:])
    assert count_duplicates(_sandbox(log, {"s1": "c1"}), Counter(s1=1)).total == 0


def test_an_unused_workflow_is_a_duplicate_unless_its_answer_was_lost() -> None:
    log = [
        _r("create_workflow", "lost", 0, fault="drop_after", reference="c1"),
        _r("create_workflow", "twice", 201, reference="c1"),
        *_ceremony("s1", "c1"),
    ]
    count = count_duplicates(_sandbox(log, {"s1": "c1"}), Counter(s1=1))
    assert count.total == 1
    assert count.orphans == Counter(c1=1)
    assert "twice" in count.details[0]


def test_two_signed_workflows_of_one_client_reference_are_a_duplicate() -> None:
    log = [*_ceremony("s1", "c1"), *_ceremony("s2", "c1")]
    count = count_duplicates(_sandbox(log, {"s1": "c1", "s2": "c1"}), Counter(s1=1, s2=1))
    assert count.total == 1


def test_an_upload_repeat_is_excused_only_after_a_lost_answer_or_a_cancel() -> None:
    lost = _ceremony("s1", "c1")
    lost.insert(1, _r("upload_documents", "s1", 0, fault="drop_after"))
    count = count_duplicates(_sandbox(lost, {"s1": "c1"}), Counter(s1=1))
    assert (count.total, count.upload_repeats) == (0, 1)
    plain = _ceremony("s1", "c1")
    plain.insert(1, _r("upload_documents", "s1", 204))
    assert count_duplicates(_sandbox(plain, {"s1": "c1"}), Counter(s1=1)).total == 1
    cancelled = count_duplicates(_sandbox(plain, {"s1": "c1"}), Counter(s1=1), {"c1"})
    assert (cancelled.total, cancelled.upload_repeats) == (0, 1)
