"""Table tests of the pure flow machine and the flow state format."""

from __future__ import annotations

import json

import pytest

from qes_async import Status
from qes_async._flow.machine import (
    WAIT_TARGETS,
    Action,
    Event,
    RestartReason,
    Step,
    TransitionError,
    next_action,
    on_event,
    on_status,
    restart_reason_for,
    should_restart,
    transition,
)
from qes_async._flow.state import (
    FORMAT_VERSION,
    DocumentRecord,
    FlowState,
    Generation,
    StateFormatError,
    dump_state,
    parse_state,
)

HAPPY_PATH = [
    (Step.CREATE, Event.CREATED, Step.AWAIT_PENDING),
    (Step.AWAIT_PENDING, Status.PENDING, Step.UPLOAD_DOCUMENTS),
    (Step.UPLOAD_DOCUMENTS, Event.DOCUMENTS_UPLOADED, Step.UPLOAD_MOBILE),
    (Step.UPLOAD_MOBILE, Event.MOBILE_UPLOADED, Step.AWAIT_CONSENT),
    (Step.AWAIT_CONSENT, Status.USER_CONSENT_REQUIRED, Step.CONSENT),
    (Step.CONSENT, Event.APPROVED, Step.AWAIT_CONFIRMATION),
    (Step.AWAIT_CONFIRMATION, Status.CONFIRMATION_REQUIRED, Step.PASSCODE),
    (Step.PASSCODE, Event.CONFIRMED, Step.AWAIT_SIGNED),
    (Step.AWAIT_SIGNED, Status.PENDING_VERIFICATION, Step.AWAIT_SIGNED),
    (Step.AWAIT_SIGNED, Status.SIGNED, Step.DOWNLOAD),
    (Step.DOWNLOAD, Event.DOWNLOADED, Step.SIGNED),
]


@pytest.mark.parametrize(("step", "what", "expected"), HAPPY_PATH)
def test_happy_path_transitions(step: Step, what: Event | Status, expected: Step) -> None:
    assert transition(step, what) is expected


@pytest.mark.parametrize(
    ("step", "what", "expected"),
    [
        (Step.AWAIT_CONSENT, Status.SELFIE_REQUIRED, Step.SELFIE),
        (Step.SELFIE, Event.SELFIE_UPLOADED, Step.AWAIT_CONSENT),
        (Step.CONSENT, Event.DECLINED, Step.DECLINED),
        (Step.PASSCODE, Event.WRONG_PASSCODE, Step.PASSCODE),
        (Step.AWAIT_SIGNED, Status.INVALID_SIGNATURE, Step.RESTART),
        (Step.CONSENT, Event.RESTART_NEEDED, Step.RESTART),
        (Step.PASSCODE, Event.RESTART_NEEDED, Step.RESTART),
        (Step.RESTART, Event.RESTARTED, Step.CREATE),
        (Step.RESTART, Event.GIVE_UP, Step.FAILED),
        (Step.AWAIT_PENDING, Status.KYC_REQUIRED, Step.FAILED),
        (Step.AWAIT_CONSENT, Status.KYC_REQUIRED, Step.FAILED),
        (Step.AWAIT_CONFIRMATION, Status.KYC_REQUIRED, Step.FAILED),
        (Step.AWAIT_SIGNED, Status.KYC_REQUIRED, Step.FAILED),
    ],
)
def test_branch_transitions(step: Step, what: Event | Status, expected: Step) -> None:
    assert transition(step, what) is expected


@pytest.mark.parametrize(
    ("step", "status", "expected"),
    [
        # The remote status is the truth after an unknown outcome or a resume.
        (Step.CONSENT, Status.CONFIRMATION_REQUIRED, Step.PASSCODE),
        (Step.CONSENT, Status.USER_CONSENT_REQUIRED, Step.CONSENT),
        (Step.PASSCODE, Status.SIGNED, Step.DOWNLOAD),
        (Step.PASSCODE, Status.PENDING_VERIFICATION, Step.AWAIT_SIGNED),
        (Step.UPLOAD_DOCUMENTS, Status.PENDING, Step.UPLOAD_DOCUMENTS),
        # uploading documents keeps `pending`: a flow past it stays past it
        (Step.UPLOAD_MOBILE, Status.PENDING, Step.UPLOAD_MOBILE),
        (Step.AWAIT_CONSENT, Status.PENDING, Step.UPLOAD_MOBILE),
        (Step.AWAIT_PENDING, Status.NEW, Step.AWAIT_PENDING),
        # error waits where it is (it may recover), unknown statuses too
        (Step.AWAIT_SIGNED, Status.ERROR, Step.AWAIT_SIGNED),
        (Step.CONSENT, Status.ERROR, Step.CONSENT),
        (Step.AWAIT_CONSENT, Status("brand_new_status"), Step.AWAIT_CONSENT),
        # no workflow, or between generations: statuses are of an old workflow
        (Step.CREATE, Status.SIGNED, Step.CREATE),
        (Step.RESTART, Status.PENDING, Step.RESTART),
    ],
)
def test_status_observations(step: Step, status: Status, expected: Step) -> None:
    assert on_status(step, status) is expected


@pytest.mark.parametrize("what", [*Event, *Status])
def test_failed_is_sticky(what: Event | Status) -> None:
    assert transition(Step.FAILED, what) is Step.FAILED


@pytest.mark.parametrize("step", [Step.SIGNED, Step.DECLINED])
@pytest.mark.parametrize("event", list(Event))
def test_finished_steps_refuse_events(step: Step, event: Event) -> None:
    with pytest.raises(TransitionError, match=f"event {event.value} is not allowed"):
        on_event(step, event)


@pytest.mark.parametrize("step", [Step.SIGNED, Step.DECLINED])
def test_finished_steps_ignore_statuses(step: Step) -> None:
    assert on_status(step, Status.ERROR) is step


@pytest.mark.parametrize(
    ("step", "event"),
    [
        (Step.CREATE, Event.APPROVED),
        (Step.CONSENT, Event.CONFIRMED),
        (Step.PASSCODE, Event.DECLINED),
        (Step.AWAIT_SIGNED, Event.DOWNLOADED),
        (Step.RESTART, Event.RESTART_NEEDED),
    ],
)
def test_out_of_order_events_are_refused(step: Step, event: Event) -> None:
    with pytest.raises(TransitionError):
        on_event(step, event)


@pytest.mark.parametrize(
    ("step", "action"),
    [
        (Step.CREATE, Action.CREATE_WORKFLOW),
        (Step.AWAIT_PENDING, Action.WAIT),
        (Step.UPLOAD_DOCUMENTS, Action.UPLOAD_DOCUMENTS),
        (Step.UPLOAD_MOBILE, Action.UPLOAD_MOBILE),
        (Step.AWAIT_CONSENT, Action.WAIT),
        (Step.SELFIE, Action.UPLOAD_SELFIE),
        (Step.CONSENT, Action.APPROVE),
        (Step.AWAIT_CONFIRMATION, Action.WAIT),
        (Step.PASSCODE, Action.CONFIRM),
        (Step.AWAIT_SIGNED, Action.WAIT),
        (Step.DOWNLOAD, Action.DOWNLOAD),
        (Step.RESTART, Action.RESTART),
        (Step.SIGNED, Action.STOP),
        (Step.DECLINED, Action.STOP),
        (Step.FAILED, Action.STOP),
    ],
)
def test_next_action(step: Step, action: Action) -> None:
    assert next_action(step) is action


def test_every_waiting_step_has_targets() -> None:
    waiting = {step for step in Step if next_action(step) is Action.WAIT}
    assert waiting == set(WAIT_TARGETS)
    assert WAIT_TARGETS[Step.AWAIT_CONSENT] == (
        Status.USER_CONSENT_REQUIRED,
        Status.SELFIE_REQUIRED,
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("flow_expired", RestartReason.FLOW_EXPIRED),
        ("passcode_expired", RestartReason.PASSCODE_EXPIRED),
        ("too_many_attempts", RestartReason.TOO_MANY_ATTEMPTS),
        ("invalid_signature", RestartReason.INVALID_SIGNATURE),
        ("error", RestartReason.ERROR_UNRECOVERED),
        ("kyc_required", None),
        ("document_mismatch", None),
    ],
)
def test_restart_reasons(code: str, reason: RestartReason | None) -> None:
    assert restart_reason_for(code) is reason


@pytest.mark.parametrize(
    ("generations", "limit", "allowed"),
    [(1, 0, False), (1, 1, True), (2, 1, False), (3, 3, True), (4, 3, False)],
)
def test_restart_is_bounded(generations: int, limit: int, allowed: bool) -> None:
    assert should_restart(generations, limit) is allowed


def test_machine_is_pure() -> None:
    from pathlib import Path

    import qes_async._flow.machine as machine

    source = Path(machine.__file__).read_text(encoding="utf-8")
    assert "import asyncio" not in source
    assert "aiohttp" not in source
    assert "asyncio" not in {name.split(".")[0] for name in vars(machine)}


# ------------------------------------------------------------------------- state format


def _state() -> FlowState:
    state = FlowState(
        flow_id="flow-1",
        client_reference="client-7",
        mobile_number="+31612345678",
        documents=[DocumentRecord("a.pdf", "ab" * 32, 10, "Loan", "/tmp/a.pdf")],
        created_at=100.0,
    )
    state.generations.append(Generation(number=1, started_at=100.0, signature_id="sig-1"))
    state.generation.deadlines["consent"] = 7300.0
    state.step = Step.CONSENT
    return state


def test_state_round_trips_through_json() -> None:
    state = _state()
    text = json.dumps(dump_state(state))
    assert parse_state(text) == state
    assert parse_state(text.encode()) == state
    assert json.loads(text)["format"] == FORMAT_VERSION
    assert json.loads(text)["step"] == "consent"


def test_state_repr_masks_the_mobile_number() -> None:
    assert "+31612345678" not in repr(_state())
    assert "+31******678" in repr(_state())


def test_next_deadline_is_that_of_the_window_the_flow_is_in() -> None:
    state = _state()
    state.generation.deadlines["selfie"] = 5000.0  # an earlier window, passed already
    assert state.next_deadline() == 7300.0  # in consent: its 2 h
    state.step = Step.AWAIT_CONFIRMATION  # consent given: that deadline is behind it
    assert state.next_deadline() is None
    state.generation.deadlines["confirmation"] = 9000.0
    state.step = Step.PASSCODE
    assert state.next_deadline() == 9000.0
    state.step = Step.SIGNED
    assert state.next_deadline() is None


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_parser_refuses_unknown_versions(version: object) -> None:
    data = dump_state(_state())
    data["format"] = version
    with pytest.raises(StateFormatError, match=f"flow state format {version!r} is not supported"):
        parse_state(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "extra fields found"),
        ({"step": "teleport"}, r"\$\.step"),
        ({"generations": [{"number": 1}]}, "wrong shape"),
    ],
)
def test_parser_refuses_unknown_fields_and_shapes(change: dict[str, object], message: str) -> None:
    data = {**dump_state(_state()), **change}
    with pytest.raises(StateFormatError, match=message):
        parse_state(data)


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_parser_refuses_non_objects(text: str) -> None:
    with pytest.raises(StateFormatError):
        parse_state(text)


def test_state_error_is_a_value_error_and_a_flow_error() -> None:
    from qes_async import FlowError

    assert issubclass(StateFormatError, ValueError)
    assert issubclass(StateFormatError, FlowError)


# ---------------------------------------------------------------- the machine's own tables
# Each decision the flow makes about a status or a step lives in one table; these tests
# fail when a status, a step or an action is added without its row.

from qes_async import FlowExpiredError, PasscodeExpiredError, TooManyAttemptsError  # noqa: E402
from qes_async._core.models import STATUS_FACTS, STATUS_RANK  # noqa: E402
from qes_async._flow import machine as fm  # noqa: E402
from qes_async._flow import steps  # noqa: E402


def test_every_documented_status_has_its_facts() -> None:
    assert set(STATUS_FACTS) == set(Status)


def test_ranks_follow_the_ceremony_and_error_has_none() -> None:
    ceremony = [
        Status.NEW,
        Status.PENDING,
        Status.SELFIE_REQUIRED,
        Status.USER_CONSENT_REQUIRED,
        Status.CONFIRMATION_REQUIRED,
        Status.PENDING_VERIFICATION,
        Status.SIGNED,
    ]
    assert [STATUS_RANK[s] for s in ceremony] == sorted(STATUS_RANK[s] for s in ceremony)
    assert len({STATUS_RANK[s] for s in ceremony}) == len(ceremony)
    assert Status.ERROR not in STATUS_RANK
    # Every end ranks with the furthest: nothing follows any of them.
    ends = [s for s, f in STATUS_FACTS.items() if f.terminal]
    assert {STATUS_RANK[s] for s in ends} == {max(STATUS_RANK.values())}


def test_the_terminal_statuses_are_the_three_ends() -> None:
    terminal = {s for s in Status if s.is_terminal}
    assert terminal == {Status.SIGNED, Status.KYC_REQUIRED, Status.INVALID_SIGNATURE}
    assert not Status("some_new_status").is_terminal


def test_every_status_but_error_sends_the_flow_somewhere() -> None:
    for status in Status:
        moved = {fm.on_status(step, status) for step in (Step.AWAIT_PENDING, Step.AWAIT_SIGNED)}
        if status is Status.ERROR:
            assert moved == {Step.AWAIT_PENDING, Step.AWAIT_SIGNED}
        else:
            assert len(moved) == 1, status


def test_actionable_statuses_are_those_with_something_to_do() -> None:
    assert set(fm.ACTIONABLE) == {
        Status.PENDING,
        Status.SELFIE_REQUIRED,
        Status.USER_CONSENT_REQUIRED,
        Status.CONFIRMATION_REQUIRED,
        Status.PENDING_VERIFICATION,
        Status.SIGNED,
    }


def test_every_asking_step_has_one_window_and_the_contracts_lengths() -> None:
    asking = {Step.CONSENT, Step.PASSCODE, Step.SELFIE}
    assert set(fm.WINDOWS) == asking
    assert fm.WINDOWS[Step.CONSENT] == ("consent", 7200.0)
    assert fm.WINDOWS[Step.PASSCODE] == ("confirmation", 3600.0)
    assert {step: name for step, (name, _) in fm.WINDOWS.items()} == fm.WINDOW_OF_STEP


def test_settled_covers_the_unsafe_asking_calls_and_moves_forward() -> None:
    assert set(fm.SETTLED) == {Action.APPROVE, Action.CONFIRM}
    for action, (left, landed) in fm.SETTLED.items():
        step = next(s for s in Step if fm.next_action(s) is action)
        assert fm.on_status(Step.AWAIT_CONSENT, left) is step
        assert all(STATUS_RANK[s] > STATUS_RANK[left] for s in landed)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TooManyAttemptsError(429), RestartReason.TOO_MANY_ATTEMPTS),
        (PasscodeExpiredError(422), RestartReason.PASSCODE_EXPIRED),
        (FlowExpiredError(422), RestartReason.FLOW_EXPIRED),
        (ValueError("no refusal"), None),
    ],
)
def test_refusals_map_to_one_restart_reason(exc: Exception, reason: RestartReason | None) -> None:
    assert fm.restart_reason_for_error(exc) is reason
    if reason is not None:  # the error's code names the same reason
        assert fm.restart_reason_for(reason.value) is reason


def test_every_action_but_stop_has_exactly_one_performer() -> None:
    assert set(steps._PERFORMERS) == set(Action) - {Action.STOP}
    assert all(callable(p) for p in steps._PERFORMERS.values())
    # Every step's action is either performed or ends the loop.
    assert {fm.next_action(s) for s in Step} <= set(steps._PERFORMERS) | {Action.STOP}
