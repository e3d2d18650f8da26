"""Every status transition of the contract, driven by calls and by the sandbox clock."""

from __future__ import annotations

import pytest
from sandbox_helpers import Api, api, clock, sandbox

from qes_async import FakeClock
from qes_async.sandbox import ExtractedDetails, IdentityCase, SandboxServer

__all__ = ["api", "clock", "sandbox"]
HOUR = 3600.0


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        (IdentityCase(), "pending", None),
        (IdentityCase(risk_score=500), "kyc_required", 1201),
        (IdentityCase(risk_score=199), "kyc_required", 1201),
        (IdentityCase(case_status="rejected"), "kyc_required", 1021),
        (IdentityCase(case_status="pending"), "kyc_required", 1035),
        (IdentityCase(case_status="new"), "kyc_required", 1035),
        (IdentityCase(case_status="pending", flow_kind="pending_verification"), "pending", None),
        (IdentityCase(case_status="new", flow_kind="pending_verification"), "pending", None),
        (
            IdentityCase(case_status="rejected", flow_kind="pending_verification"),
            "kyc_required",
            1021,
        ),
    ],
)
async def test_eligibility_after_create(
    api: Api, sandbox: SandboxServer, case: IdentityCase, status: str, code: int | None
) -> None:
    sandbox.add_client("c", case)
    sid = await api.create("c")
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == (status, code)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        (IdentityCase(case_age_hours=25), 3105),
        (IdentityCase(device_model="Pixel 8", signing_device_model="iPhone 15"), 3541),
    ],
)
async def test_selfie_required_then_consent_after_selfie(
    api: Api, sandbox: SandboxServer, case: IdentityCase, code: int
) -> None:
    sandbox.add_client("c", case)
    sid = await api.to_consent("c")
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == ("selfie_required", code)
    assert (await api.details(sid)).status == 409
    assert (await api.selfie(sid)).status == 204
    assert (await api.status(sid))["status"] == "user_consent_required"


async def test_selfie_outside_selfie_required_is_409(api: Api) -> None:
    sid = await api.to_consent()
    answer = await api.selfie(sid)
    assert (answer.status, answer.json["code"]) == (409, "invalid_status")


async def test_selfie_not_uploaded_within_24h_turns_to_error(
    api: Api, sandbox: SandboxServer, clock: FakeClock
) -> None:
    sandbox.add_client("c", IdentityCase(case_age_hours=30))
    sid = await api.to_consent("c")
    clock.advance(24 * HOUR - 1)
    assert (await api.status(sid))["status"] == "selfie_required"
    clock.advance(1)
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == ("error", 5002)


@pytest.mark.parametrize(
    ("step", "driver"),
    [("mobile", "to_consent"), ("approval", "to_confirmation"), ("confirmation", "to_signed")],
)
async def test_kyc_required_at_each_step(
    api: Api, sandbox: SandboxServer, step: str, driver: str
) -> None:
    sandbox.add_client("c", IdentityCase(kyc_fail_at=step))
    if step == "confirmation":
        sid = await api.to_confirmation("c")
        assert (await api.confirm(sid)).status == 200
    elif step == "approval":
        sid = await api.to_consent("c")
        assert (await api.approve(sid)).status == 200
    else:
        sid = await api.to_consent("c")
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == ("kyc_required", 4110)
    assert body["errors"] == [{"code": "4110", "message": "eligibility check failed"}]


async def test_consent_deadline_answers_422_flow_expired(api: Api, clock: FakeClock) -> None:
    sid = await api.to_consent()
    details = (await api.details(sid)).json
    clock.advance(2 * HOUR)
    for answer in (await api.details(sid), await api.approve(sid, details)):
        assert (answer.status, answer.json["code"]) == (422, "flow_expired")


async def test_approval_just_before_the_consent_deadline_is_accepted(
    api: Api, clock: FakeClock
) -> None:
    sid = await api.to_consent()
    details = (await api.details(sid)).json
    clock.advance(2 * HOUR - 1)
    assert (await api.approve(sid, details)).status == 200


async def test_confirmation_deadline_answers_422_flow_expired(api: Api, clock: FakeClock) -> None:
    sid = await api.to_confirmation()
    clock.advance(HOUR)
    answer = await api.confirm(sid)
    assert (answer.status, answer.json["code"]) == (422, "flow_expired")


async def test_passcode_older_than_two_hours_is_passcode_expired(
    api: Api, clock: FakeClock
) -> None:
    sid = await api.to_confirmation()
    clock.advance(2 * HOUR)
    answer = await api.confirm(sid)
    assert (answer.status, answer.json["code"]) == (422, "passcode_expired")


@pytest.mark.parametrize("driver", ["create", "to_consent", "to_confirmation"])
async def test_24h_in_a_waiting_status_turns_to_error(
    api: Api, clock: FakeClock, driver: str
) -> None:
    sid = await getattr(api, driver)()
    before = (await api.status(sid))["status"]
    clock.advance(24 * HOUR)
    body = await api.status(sid)
    assert before in ("pending", "user_consent_required", "confirmation_required")
    assert (body["status"], body["statusCode"]) == ("error", 5002)


async def test_three_wrong_passcodes_spend_the_workflow(api: Api, sandbox: SandboxServer) -> None:
    sid = await api.to_confirmation()
    right = sandbox.latest_passcode(sid)
    wrong = "000000" if right != "000000" else "111111"
    first, second, third = [await api.confirm(sid, wrong) for _ in range(3)]
    assert (first.status, first.json["code"], first.json["attemptsLeft"]) == (
        409,
        "invalid_passcode",
        2,
    )
    assert (second.status, second.json["attemptsLeft"]) == (409, 1)
    assert (third.status, third.json["code"]) == (429, "too_many_attempts")
    after = await api.confirm(sid, right)
    assert (after.status, after.json["code"]) == (429, "too_many_attempts")


async def test_pending_verification_then_signed_when_details_match(
    api: Api, sandbox: SandboxServer, clock: FakeClock
) -> None:
    sandbox.add_client(
        "c",
        IdentityCase(
            case_status="pending", flow_kind="pending_verification", verification_seconds=600
        ),
    )
    sid = await api.to_signed("c")
    assert (await api.status(sid))["status"] == "pending_verification"
    clock.advance(600)
    assert (await api.status(sid))["status"] == "signed"


async def test_invalid_signature_then_the_reattempt_uses_confirmed_details(
    api: Api, sandbox: SandboxServer
) -> None:
    real = ExtractedDetails("Janet", "Doe-Smith", "NX7654321")
    sandbox.add_client(
        "c", IdentityCase(case_status="new", flow_kind="pending_verification", extracted=real)
    )
    first = await api.to_signed("c")
    assert (await api.status(first))["status"] == "invalid_signature"
    again = await api.to_signed("c")
    assert (await api.status(again))["status"] == "signed"
    case = sandbox.signature(again).case
    assert (case.first_name, case.last_name, case.id_document_number) == (
        "Janet",
        "Doe-Smith",
        "NX7654321",
    )


async def test_verification_failure_is_kyc_required(api: Api, sandbox: SandboxServer) -> None:
    sandbox.add_client(
        "c",
        IdentityCase(
            case_status="new", flow_kind="pending_verification", kyc_fail_at="verification"
        ),
    )
    sid = await api.to_signed("c")
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == ("kyc_required", 3311)


async def test_error_recovers_to_the_previous_status(
    api: Api, sandbox: SandboxServer, clock: FakeClock
) -> None:
    sandbox.add_client(
        "c", IdentityCase(error_in="user_consent_required", error_recovers_after=300)
    )
    sid = await api.to_consent("c")
    body = await api.status(sid)
    assert (body["status"], body["statusCode"]) == ("error", 5001)
    assert (await api.details(sid)).status == 409
    clock.advance(300)
    assert (await api.status(sid))["status"] == "user_consent_required"
    assert (await api.approve(sid)).status == 200


async def test_error_that_never_recovers(
    api: Api, sandbox: SandboxServer, clock: FakeClock
) -> None:
    sandbox.add_client(
        "c", IdentityCase(error_in="confirmation_required", error_recovers_after=None)
    )
    sid = await api.to_confirmation("c")
    clock.advance(48 * HOUR)
    assert (await api.status(sid))["status"] == "error"


async def test_processing_delay_keeps_the_old_status_until_time_passes(
    clock: FakeClock,
) -> None:
    import aiohttp

    async with (
        SandboxServer(clock=clock, processing_delay=5) as sandbox,
        aiohttp.ClientSession() as session,
    ):
        api = Api(sandbox, session)
        sid = await api.create()
        assert (await api.status(sid))["status"] == "new"
        assert (await api.upload(sid)).status == 409
        clock.advance(5)
        assert (await api.status(sid))["status"] == "pending"


async def test_infocert_contract_is_a_pdf_and_namirial_is_204(
    api: Api, sandbox: SandboxServer
) -> None:
    sandbox.add_client("n", IdentityCase(qtsp="namirial"))
    infocert = await api.to_signed()
    namirial = await api.to_signed("n")
    a = await api.call("GET", f"/v1/signatures/{infocert}/infocert-contract")
    b = await api.call("GET", f"/v1/signatures/{namirial}/infocert-contract")
    assert (a.status, a.headers["Content-Type"], a.raw[:5]) == (200, "application/pdf", b"%PDF-")
    assert (b.status, b.raw) == (204, b"")
