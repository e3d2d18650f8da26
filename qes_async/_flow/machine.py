"""The signature flow's state machine: pure, synchronous, a transition table.

It decides and never acts: given where a flow is (a :class:`Step`) and what just happened
(an :class:`Event`: one of our own calls succeeded, the service refused it, or the remote
status was observed), it says where the flow is now; given a step, it says which
:class:`Action` the driver must perform next.  No I/O, no asyncio, no clock.

Shaped after h11's ``_state.py``: one table of ``(step, event) -> step``, terminal steps, and
a *sticky* failed step that every event leaves unchanged.  A remote status is always the
source of truth: observing it moves the flow to the step that status asks for, which is how
the driver recovers after an unknown outcome or a resume.
"""

from __future__ import annotations

import enum

from .._core.errors import FlowExpiredError, PasscodeExpiredError, QESError, TooManyAttemptsError
from .._core.models import Status

__all__ = [
    "ACTIONABLE",
    "SETTLED",
    "WAIT_TARGETS",
    "WINDOWS",
    "WINDOW_OF_STEP",
    "Action",
    "Event",
    "RestartReason",
    "Step",
    "TransitionError",
    "next_action",
    "on_event",
    "on_status",
    "restart_reason_for",
    "restart_reason_for_error",
    "should_restart",
    "transition",
]


class Step(str, enum.Enum):
    """Where a flow stands."""

    CREATE = "create"  # no workflow yet in this generation
    AWAIT_PENDING = "await_pending"
    UPLOAD_DOCUMENTS = "upload_documents"
    UPLOAD_MOBILE = "upload_mobile"
    AWAIT_CONSENT = "await_consent"  # until user_consent_required or selfie_required
    SELFIE = "selfie"
    CONSENT = "consent"  # details, hash check, ask the signer, approve
    AWAIT_CONFIRMATION = "await_confirmation"
    PASSCODE = "passcode"  # ask the signer, confirm
    AWAIT_SIGNED = "await_signed"  # through pending_verification when the flow has it
    DOWNLOAD = "download"
    RESTART = "restart"  # this generation is spent; a new workflow is needed
    SIGNED = "signed"  # terminal: every document downloaded
    DECLINED = "declined"  # terminal: the signer declined
    FAILED = "failed"  # terminal and sticky

    @property
    def is_terminal(self) -> bool:
        """True when the flow has ended."""
        return self in _TERMINAL


_TERMINAL = frozenset({Step.SIGNED, Step.DECLINED, Step.FAILED})


class Event(str, enum.Enum):
    """Something that happened to the flow (other than a status observation)."""

    CREATED = "created"
    DOCUMENTS_UPLOADED = "documents_uploaded"
    MOBILE_UPLOADED = "mobile_uploaded"
    SELFIE_UPLOADED = "selfie_uploaded"
    APPROVED = "approved"
    CONFIRMED = "confirmed"
    WRONG_PASSCODE = "wrong_passcode"
    DOWNLOADED = "downloaded"
    DECLINED = "declined"
    RESTART_NEEDED = "restart_needed"  # see RestartReason
    RESTARTED = "restarted"  # a new generation begins
    GIVE_UP = "give_up"  # restart limit, kyc_required, a check failed, an unexpected error


class RestartReason(str, enum.Enum):
    """Why a generation was abandoned for a new signature-only workflow."""

    FLOW_EXPIRED = "flow_expired"  # 422 after the 2 h consent or 1 h confirmation window
    PASSCODE_EXPIRED = "passcode_expired"
    TOO_MANY_ATTEMPTS = "too_many_attempts"  # 429: the workflow is spent
    INVALID_SIGNATURE = "invalid_signature"
    ERROR_UNRECOVERED = "error_unrecovered"
    DEADLINE_PASSED = "deadline_passed"  # the signer did not answer in time


class Action(str, enum.Enum):
    """What the driver must do in a step."""

    CREATE_WORKFLOW = "create_workflow"
    WAIT = "wait"  # wait for WAIT_TARGETS[step]
    UPLOAD_DOCUMENTS = "upload_documents"
    UPLOAD_MOBILE = "upload_mobile"
    UPLOAD_SELFIE = "upload_selfie"
    APPROVE = "approve"
    CONFIRM = "confirm"
    DOWNLOAD = "download"
    RESTART = "restart"
    STOP = "stop"


class TransitionError(RuntimeError):
    """An event that the current step does not allow: a bug in the driver, not the service."""


_ACTIONS: dict[Step, Action] = {
    Step.CREATE: Action.CREATE_WORKFLOW,
    Step.AWAIT_PENDING: Action.WAIT,
    Step.UPLOAD_DOCUMENTS: Action.UPLOAD_DOCUMENTS,
    Step.UPLOAD_MOBILE: Action.UPLOAD_MOBILE,
    Step.AWAIT_CONSENT: Action.WAIT,
    Step.SELFIE: Action.UPLOAD_SELFIE,
    Step.CONSENT: Action.APPROVE,
    Step.AWAIT_CONFIRMATION: Action.WAIT,
    Step.PASSCODE: Action.CONFIRM,
    Step.AWAIT_SIGNED: Action.WAIT,
    Step.DOWNLOAD: Action.DOWNLOAD,
    Step.RESTART: Action.RESTART,
    Step.SIGNED: Action.STOP,
    Step.DECLINED: Action.STOP,
    Step.FAILED: Action.STOP,
}

#: The statuses each waiting step waits for.
WAIT_TARGETS: dict[Step, tuple[Status, ...]] = {
    Step.AWAIT_PENDING: (Status.PENDING,),
    Step.AWAIT_CONSENT: (Status.USER_CONSENT_REQUIRED, Status.SELFIE_REQUIRED),
    Step.AWAIT_CONFIRMATION: (Status.CONFIRMATION_REQUIRED,),
    Step.AWAIT_SIGNED: (Status.SIGNED,),
}

# Our own successes: (step, event) -> step.
_EVENTS: dict[tuple[Step, Event], Step] = {
    (Step.CREATE, Event.CREATED): Step.AWAIT_PENDING,
    (Step.UPLOAD_DOCUMENTS, Event.DOCUMENTS_UPLOADED): Step.UPLOAD_MOBILE,
    (Step.UPLOAD_MOBILE, Event.MOBILE_UPLOADED): Step.AWAIT_CONSENT,
    (Step.SELFIE, Event.SELFIE_UPLOADED): Step.AWAIT_CONSENT,
    (Step.CONSENT, Event.APPROVED): Step.AWAIT_CONFIRMATION,
    (Step.CONSENT, Event.DECLINED): Step.DECLINED,
    (Step.PASSCODE, Event.CONFIRMED): Step.AWAIT_SIGNED,
    (Step.PASSCODE, Event.WRONG_PASSCODE): Step.PASSCODE,
    (Step.DOWNLOAD, Event.DOWNLOADED): Step.SIGNED,
    (Step.RESTART, Event.RESTARTED): Step.CREATE,
}
_LIVE = [step for step in Step if not step.is_terminal]
# Any live step may be abandoned for a new generation, or given up.
for _step in _LIVE:
    if _step is not Step.RESTART:
        _EVENTS[(_step, Event.RESTART_NEEDED)] = Step.RESTART
    _EVENTS[(_step, Event.GIVE_UP)] = Step.FAILED

# Where an observed remote status sends the flow, whatever step it was in...
_BY_STATUS: dict[Status, Step] = {
    Status.NEW: Step.AWAIT_PENDING,
    Status.PENDING: Step.UPLOAD_DOCUMENTS,
    Status.SELFIE_REQUIRED: Step.SELFIE,
    Status.USER_CONSENT_REQUIRED: Step.CONSENT,
    Status.CONFIRMATION_REQUIRED: Step.PASSCODE,
    Status.PENDING_VERIFICATION: Step.AWAIT_SIGNED,
    Status.SIGNED: Step.DOWNLOAD,
    Status.KYC_REQUIRED: Step.FAILED,
    Status.INVALID_SIGNATURE: Step.RESTART,
}
# ...except where the step knows more than the status: uploading documents keeps `pending`,
# so a flow past that upload stays past it.
_STATUS_OVERRIDES: dict[tuple[Step, Status], Step] = {
    (Step.UPLOAD_MOBILE, Status.PENDING): Step.UPLOAD_MOBILE,
    (Step.AWAIT_CONSENT, Status.PENDING): Step.UPLOAD_MOBILE,
}

#: Statuses worth acting on once an ``error`` has passed: every one that sends the flow to
#: a step with something to do (not back to the start, not to an end or a restart).
ACTIONABLE: tuple[Status, ...] = tuple(
    status
    for status, step in _BY_STATUS.items()
    if step not in {Step.AWAIT_PENDING, Step.FAILED, Step.RESTART}
)

#: The signer's windows: the deadline an asking step starts when the flow first enters
#: it, by name (as kept in the checkpoint) and length. The contract gives 2 h to approve
#: and 1 h to confirm; the selfie window is ours.
WINDOWS: dict[Step, tuple[str, float]] = {
    Step.CONSENT: ("consent", 2 * 3600.0),
    Step.PASSCODE: ("confirmation", 3600.0),
    Step.SELFIE: ("selfie", 24 * 3600.0),
}
WINDOW_OF_STEP: dict[Step, str] = {step: name for step, (name, _) in WINDOWS.items()}

#: An unsafe call whose answer may have been lost: the status it leaves behind when it
#: never landed, and the statuses that show it did. Until one of them shows, the driver
#: must not send it again.
SETTLED: dict[Action, tuple[Status, tuple[Status, ...]]] = {
    Action.APPROVE: (Status.USER_CONSENT_REQUIRED, (Status.CONFIRMATION_REQUIRED,)),
    Action.CONFIRM: (
        Status.CONFIRMATION_REQUIRED,
        (Status.SIGNED, Status.PENDING_VERIFICATION),
    ),
}

_REFUSALS: dict[str, RestartReason] = {
    "flow_expired": RestartReason.FLOW_EXPIRED,
    "passcode_expired": RestartReason.PASSCODE_EXPIRED,
    "too_many_attempts": RestartReason.TOO_MANY_ATTEMPTS,
    "invalid_signature": RestartReason.INVALID_SIGNATURE,
    "error": RestartReason.ERROR_UNRECOVERED,
}


def next_action(step: Step) -> Action:
    """The action the driver performs in ``step``."""
    return _ACTIONS[step]


def on_event(step: Step, event: Event) -> Step:
    """The step after ``event``; FAILED is sticky, other terminal steps refuse events.

    Raises:
        TransitionError: the event cannot happen in this step.
    """
    if step is Step.FAILED:
        return Step.FAILED
    try:
        return _EVENTS[(step, event)]
    except KeyError:
        raise TransitionError(f"event {event.value} is not allowed in step {step.value}") from None


def on_status(step: Step, status: Status) -> Step:
    """The step after observing the remote ``status`` while in ``step``.

    ``error`` and statuses the contract does not know leave the step unchanged: the driver
    keeps waiting (the waiters give ``error`` its grace period).  Terminal steps and a flow
    that has no workflow yet ignore statuses.
    """
    if step.is_terminal or step is Step.CREATE or step is Step.RESTART:
        return step
    override = _STATUS_OVERRIDES.get((step, status))
    if override is not None:
        return override
    return _BY_STATUS.get(status, step)


def transition(step: Step, what: Event | Status) -> Step:
    """One entry point for both kinds of input (see :func:`on_event`, :func:`on_status`)."""
    if isinstance(what, Event):
        return on_event(step, what)
    return on_status(step, what)


def restart_reason_for(code: str) -> RestartReason | None:
    """The restart reason for a service error code or a status, or None if it is not one."""
    return _REFUSALS.get(code)


# The service's refusals that spend a generation, most specific first.
_REFUSAL_ERRORS: tuple[tuple[type[QESError], RestartReason], ...] = (
    (TooManyAttemptsError, RestartReason.TOO_MANY_ATTEMPTS),
    (PasscodeExpiredError, RestartReason.PASSCODE_EXPIRED),
    (FlowExpiredError, RestartReason.FLOW_EXPIRED),
)


def restart_reason_for_error(exc: BaseException) -> RestartReason | None:
    """The restart reason a refusal of the service means, or None if it spends nothing."""
    for kind, reason in _REFUSAL_ERRORS:
        if isinstance(exc, kind):
            return reason
    return None


def should_restart(generations: int, max_restarts: int) -> bool:
    """Whether one more generation is allowed after ``generations`` have been used."""
    return generations - 1 < max_restarts
