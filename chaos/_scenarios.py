"""The mix of scenarios a chaos run draws from, and the simulated signer of each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from qes_async import CallbackSigner, ConsentRequest, FakeClock, PasscodeRequest, SelfieRequest
from qes_async.sandbox import ExtractedDetails, IdentityCase

# A tiny JPEG (start and end markers around a JFIF header): enough for the sandbox.
SELFIE_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")
# The signer of the expiry scenario comes back after the 2 h consent window.
LATE_BY = 2 * 3600.0 + 60.0

#: The documents of a flow: one to three, some with names that reduce to the same file
#: (``contract`` and ``contract.pdf``, ``.loan.pdf`` and ``loan.pdf``).
NAME_SETS: tuple[tuple[str, ...], ...] = (
    ("contract.pdf",),
    ("contract.pdf", "contract"),
    (".loan.pdf", "loan.pdf"),
    ("loan.pdf", "annex.pdf", "annex"),
    ("contract.pdf",),
    ("terms.pdf", "privacy.pdf"),
    ("contract.pdf",),
)


@attrs.frozen
class Scenario:
    """One path through the ceremony and the outcome it must end in.

    ``first_ended`` lists the acceptable reasons the first generation ended for, when the
    scenario forces a new workflow (``None``: no restart is required).
    """

    name: str
    weight: int
    case: IdentityCase = attrs.field(factory=IdentityCase)
    expect: str = "signed"
    wrong_passcode_first: bool = False
    late_consent_first: bool = False
    decline: bool = False
    first_ended: tuple[str, ...] | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("happy", 30),
    Scenario("selfie", 8, IdentityCase(case_age_hours=48)),
    Scenario("wrong_passcode", 10, wrong_passcode_first=True),
    Scenario("expiry", 6, late_consent_first=True, first_ended=("deadline_passed", "flow_expired")),
    Scenario(
        "pending_verification",
        8,
        IdentityCase(
            flow_kind="pending_verification", case_status="pending", verification_seconds=90.0
        ),
    ),
    Scenario("kyc", 8, IdentityCase(risk_score=500), expect="kyc_required"),
    Scenario(
        "invalid_signature",
        6,
        IdentityCase(
            flow_kind="pending_verification",
            case_status="pending",
            verification_seconds=30.0,
            extracted=ExtractedDetails("Jane", "Doe", "XX9999999"),
        ),
        first_ended=("invalid_signature",),
    ),
    Scenario(
        "error_recovered",
        8,
        IdentityCase(error_in="user_consent_required", error_recovers_after=60.0),
    ),
    Scenario("namirial", 8, IdentityCase(qtsp="namirial")),
    Scenario("declined", 8, decline=True, expect="declined"),
)


def pick(index: int, draw: Callable[[], float]) -> Scenario:
    """The scenario of flow ``index``: every scenario once first, then by weight."""
    if index < len(SCENARIOS):
        return SCENARIOS[index]
    total = sum(s.weight for s in SCENARIOS)
    point = draw() * total
    for scenario in SCENARIOS:
        point -= scenario.weight
        if point < 0:
            return scenario
    return SCENARIOS[-1]


def make_signer(
    scenario: Scenario,
    passcode_of: Callable[[str], str],
    clock: FakeClock,
    given: list[tuple[str, str]],
) -> CallbackSigner:
    """The simulated human; every passcode it types is appended to ``given`` with the
    signature it was typed for (the duplicate count's evidence of a legitimate retry)."""
    state: dict[str, Any] = {
        "late": scenario.late_consent_first,
        "back_at": None,
        "wrong": scenario.wrong_passcode_first,
    }

    async def consent(request: ConsentRequest) -> bool:
        if state["late"]:
            # Late once, until a fixed instant: a flow cancelled during the wait and
            # resumed finds the signer still away; a new generation after the deadline
            # finds them back a minute later.
            if state["back_at"] is None:
                state["back_at"] = clock.time() + LATE_BY
            await clock.sleep_until(state["back_at"], passive=True)
            state["late"] = False
        return not scenario.decline

    def passcode(request: PasscodeRequest) -> str:
        right = passcode_of(request.signature_id)
        if state["wrong"]:
            state["wrong"] = False
            right = "".join("1" if c != "1" else "2" for c in right)
        given.append((request.signature_id, right))
        return right

    def selfie(request: SelfieRequest) -> bytes:
        return SELFIE_JPEG

    return CallbackSigner(consent, passcode, selfie=selfie)
