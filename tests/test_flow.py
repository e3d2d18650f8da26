"""SignatureFlow end to end against the sandbox on a shared fake clock: every branch."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import MOBILE, world

from qes_async import (
    CallbackSigner,
    Document,
    DocumentCheckError,
    FlowEvent,
    FlowOutcome,
    KYCRequiredError,
    MemoryFlowStore,
    RestartLimitError,
    RestartPolicy,
    SignatureFlow,
    make_pdf,
)
from qes_async.sandbox import ExtractedDetails, IdentityCase


async def test_completed_flow_end_to_end(tmp_path: Path) -> None:
    events: list[FlowEvent] = []
    async with world(tmp_path) as w:
        result = await w.flow(on_event=events.append).run()
        sig = result.signature_id
        assert sig is not None
        assert result.outcome is FlowOutcome.SIGNED
        assert w.created() == 1
        counts = w.counts(sig)
        assert (counts["approve_documents"], counts["confirm_signature"]) == (1, 1)
    (doc,) = result.documents
    assert Path(doc.path).read_bytes().startswith(b"%PDF-")
    assert doc.validation == "untrusted"  # no trust roots given
    assert result.contract is not None  # InfoCert by default
    assert [g.ended for g in result.generations] == ["signed"]
    kinds = [e.kind.value for e in events]
    assert kinds[-1] == "finished"
    assert {"waiting_for_signer", "status_changed", "document_downloaded"} <= set(kinds)
    assert MOBILE not in repr(events)


async def test_signature_is_validated_against_trust_roots_and_the_client_name(
    tmp_path: Path,
) -> None:
    from qes_async.sandbox import sandbox_ca

    async with world(tmp_path) as w:
        roots = [sandbox_ca().certificate_pem]
        good = await w.flow(trust_roots=roots, expected_signer_name="Jane Doe").run()
        bad = await w.flow(trust_roots=roots, expected_signer_name="John Roe").run()
    assert good.documents[0].validation == "valid"
    assert bad.documents[0].validation == "invalid"
    assert bad.documents[0].validation_detail == "the signing certificate names someone else"


async def test_require_valid_signature_refuses_an_unchecked_document(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        with pytest.raises(DocumentCheckError, match="did not validate \\(untrusted"):
            await w.flow(require_valid_signature=True).run()


async def test_pending_verification_flow_end_to_end(tmp_path: Path) -> None:
    case = IdentityCase(
        flow_kind="pending_verification", case_status="pending", verification_seconds=600
    )
    statuses: list[str | None] = []
    async with world(tmp_path, {"client-1": case}) as w:
        result = await w.flow(on_event=lambda e: statuses.append(e.status)).run()
    assert result.outcome is FlowOutcome.SIGNED
    assert "pending_verification" in statuses
    assert len(result.generations) == 1


async def test_selfie_is_asked_and_uploaded(tmp_path: Path) -> None:
    async with world(tmp_path, {"client-1": IdentityCase(case_age_hours=48)}) as w:
        result = await w.flow().run()
        assert result.signature_id is not None
        assert w.counts(result.signature_id)["upload_selfie"] == 1
    assert "selfie" in result.generations[0].deadlines


@pytest.mark.parametrize(
    "case",
    [
        IdentityCase(risk_score=500),
        IdentityCase(kyc_fail_at="mobile"),
        IdentityCase(kyc_fail_at="approval"),
        IdentityCase(kyc_fail_at="confirmation"),
        IdentityCase(
            kyc_fail_at="verification", flow_kind="pending_verification", case_status="pending"
        ),
    ],
    ids=["eligibility", "mobile", "approval", "confirmation", "verification"],
)
async def test_kyc_required_ends_the_flow_with_codes(tmp_path: Path, case: IdentityCase) -> None:
    store = MemoryFlowStore()
    async with world(tmp_path, {"client-1": case}) as w:
        flow = w.flow(store=store)
        with pytest.raises(KYCRequiredError) as info:
            await flow.run()
        assert w.created() == 1
    assert "identity verification and QES" in str(info.value)
    assert isinstance(info.value.status_codes, tuple)
    stored = (await store.load(flow.flow_id)).data
    assert stored["outcome"] == "kyc_required"
    assert stored["step"] == "failed"
    assert stored["error"]["status_codes"] == list(info.value.status_codes)


async def _two_generations(tmp_path: Path, **signer: Any) -> tuple[Any, Any]:
    async with world(tmp_path) as w:
        result = await w.flow(signer=w.signer(**signer)).run()
        first, second = result.generations
        assert first.signature_id
        assert second.signature_id
        assert w.created() == 2
        counts = (w.counts(first.signature_id), w.counts(second.signature_id))
    assert result.outcome is FlowOutcome.SIGNED
    assert second.reason == first.ended
    assert counts[1]["approve_documents"] == 1
    assert counts[1]["confirm_signature"] == 1
    return first, counts[0]


async def test_consent_expiry_restarts_with_a_new_workflow(tmp_path: Path) -> None:
    first, counts = await _two_generations(tmp_path, consent_delay=2 * 3600 + 60)
    assert first.ended == "deadline_passed"
    assert counts["approve_documents"] == 0


async def test_confirmation_expiry_restarts_with_a_new_workflow(tmp_path: Path) -> None:
    first, counts = await _two_generations(tmp_path, passcode_delay=3600 + 60)
    assert first.ended == "deadline_passed"
    assert (counts["approve_documents"], counts["confirm_signature"]) == (1, 0)


async def test_a_signer_that_ignores_its_cancellation_cannot_hold_the_flow(
    tmp_path: Path,
) -> None:
    """The consent deadline passes while the signer still waits and will not stop when
    cancelled: the flow goes on to its next generation all the same."""
    stuck = asyncio.Event()
    async with world(tmp_path) as w:
        asked = 0

        async def consent(request: Any) -> bool:
            nonlocal asked
            asked += 1
            if asked == 1:
                try:
                    await w.clock.sleep(2 * 3600 + 60)  # past the deadline
                    await stuck.wait()
                except asyncio.CancelledError:
                    await stuck.wait()  # ...and deaf to being told to stop
            return True

        async def passcode(request: Any) -> str:
            return w.sandbox.latest_passcode(request.signature_id)

        result = await w.flow(signer=CallbackSigner(consent=consent, passcode=passcode)).run()
        stuck.set()
    assert result.outcome is FlowOutcome.SIGNED
    assert [g.ended for g in result.generations] == ["deadline_passed", "signed"]


async def test_too_many_wrong_passcodes_restart(tmp_path: Path) -> None:
    first, counts = await _two_generations(tmp_path, wrong=3)
    assert first.ended == "too_many_attempts"
    assert counts["confirm_signature"] == 3


async def test_wrong_passcode_then_right(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await w.flow(signer=w.signer(wrong=1)).run()
        asked = list(w.passcodes)
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.generations) == 1
    assert [(p.retry, p.attempts_left) for p in asked] == [(False, None), (True, 2)]


async def test_deadline_approaching_is_announced_before_it_runs_out(tmp_path: Path) -> None:
    events: list[FlowEvent] = []
    async with world(tmp_path) as w:
        await w.flow(signer=w.signer(consent_delay=7000), on_event=events.append).run()
    warnings = [e for e in events if e.kind.value == "deadline_approaching"]
    assert [e.waiting_for for e in warnings] == ["consent"]
    assert warnings[0].deadline is not None
    assert warnings[0].time == warnings[0].deadline - 600


async def test_invalid_signature_restarts_and_the_retry_signs(tmp_path: Path) -> None:
    case = IdentityCase(
        flow_kind="pending_verification",
        case_status="pending",
        extracted=ExtractedDetails("Jane", "Doe", "XX9999999"),
    )
    async with world(tmp_path, {"client-1": case}) as w:
        result = await w.flow().run()
    assert result.outcome is FlowOutcome.SIGNED
    assert [g.ended for g in result.generations] == ["invalid_signature", "signed"]


async def test_error_that_recovers_is_waited_out(tmp_path: Path) -> None:
    case = IdentityCase(error_in="user_consent_required", error_recovers_after=60)
    async with world(tmp_path, {"client-1": case}) as w:
        result = await w.flow().run()
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.generations) == 1


async def test_error_that_never_recovers_restarts_until_the_limit(tmp_path: Path) -> None:
    case = IdentityCase(error_in="user_consent_required", error_recovers_after=None)
    store = MemoryFlowStore()
    async with world(tmp_path, {"client-1": case}) as w:
        flow = w.flow(store=store, restart_policy=RestartPolicy(max_restarts=1))
        with pytest.raises(RestartLimitError, match="allows 1 restart"):
            await flow.run()
        assert w.created() == 2
    stored = (await store.load(flow.flow_id)).data
    assert [g["ended"] for g in stored["generations"]] == ["error_unrecovered"] * 2
    assert stored["outcome"] == "failed"


async def test_namirial_has_no_contract(tmp_path: Path) -> None:
    async with world(tmp_path, {"client-1": IdentityCase(qtsp="namirial")}) as w:
        result = await w.flow().run()
    assert result.outcome is FlowOutcome.SIGNED
    assert result.contract is None


async def test_infocert_contract_is_saved(tmp_path: Path) -> None:
    async with world(tmp_path, {"client-1": IdentityCase(qtsp="infocert")}) as w:
        result = await w.flow().run()
    assert result.contract is not None
    assert Path(result.contract.path).read_bytes().startswith(b"%PDF-")


async def test_decline_ends_cleanly_without_approval(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    async with world(tmp_path) as w:
        flow = w.flow(signer=w.signer(approve=False), store=store)
        result = await flow.run()
        assert result.signature_id is not None
        assert w.counts(result.signature_id)["approve_documents"] == 0
    assert result.outcome is FlowOutcome.DECLINED
    assert result.documents == ()
    stored = await store.load(flow.flow_id)
    assert stored.finished is True
    assert stored.data["outcome"] == "declined"
    assert await store.unfinished() == []


class _TamperingClient:
    """Delegates to a client but reports a different hash for the first document."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.clock = inner.clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_signature_details(self, signature_id: str, **kw: Any) -> Any:
        import attrs

        details = await self._inner.get_signature_details(signature_id, **kw)
        first = attrs.evolve(details.documents[0], sha256="0" * 64)
        return attrs.evolve(details, documents=(first, *details.documents[1:]))


async def test_document_hash_mismatch_is_refused(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = w.flow()
        flow.client = _TamperingClient(w.client)
        with pytest.raises(DocumentCheckError, match=r"differ from those uploaded \(loan\.pdf\)"):
            await flow.run()
        assert not [r for r in w.sandbox.request_log if r.route == "approve_documents"]
        assert w.consents == []


async def test_many_flows_share_one_client(tmp_path: Path) -> None:
    import asyncio

    cases = {f"client-{n}": IdentityCase() for n in range(20)}
    async with world(tmp_path, cases) as w:
        results = await asyncio.gather(*(w.flow(ref).run() for ref in cases))
        assert w.created() == 20
    assert {r.outcome for r in results} == {FlowOutcome.SIGNED}


@pytest.mark.parametrize(
    ("route", "processed"),
    # `pending` cannot tell whether documents arrived: the same bytes go again.
    [("approve_documents", 1), ("confirm_signature", 1), ("upload_documents", 2)],
)
async def test_lost_answer_is_resolved_by_reading_the_status(
    tmp_path: Path, route: str, processed: int
) -> None:
    async with world(tmp_path) as w:
        w.sandbox.script_faults(["drop_after"], route=route)
        result = await w.flow().run()
        assert result.signature_id is not None
        counts = w.counts(result.signature_id)
    assert result.outcome is FlowOutcome.SIGNED
    assert len(result.generations) == 1
    assert counts[route] == processed
    assert result.generations[0].in_flight is None


async def test_web_app_answers_through_the_inbox(tmp_path: Path) -> None:
    import asyncio

    from qes_async import AnswerKind, SignerAnswer, SignerInbox

    async with world(tmp_path) as w:
        inbox = SignerInbox(clock=w.clock)
        flow = w.flow(signer=inbox)
        task = asyncio.ensure_future(flow.run())

        async def asked(kind: str) -> Any:
            while (request := inbox.pending(flow.flow_id)) is None:
                await asyncio.sleep(0.001)
            assert type(request).__name__ == kind
            return request

        consent = await asked("ConsentRequest")
        assert [d.file_name for d in consent.documents] == ["loan.pdf"]
        assert await inbox.submit_consent(flow.flow_id, True) == SignerAnswer(AnswerKind.ACCEPTED)
        request = await asked("PasscodeRequest")
        wrong = await inbox.submit_passcode(flow.flow_id, "999999")
        right = w.sandbox.latest_passcode(request.signature_id)
        assert wrong == SignerAnswer(AnswerKind.WRONG_PASSCODE, 2) or right == "999999"
        assert (await inbox.submit_passcode(flow.flow_id, right)).accepted
        result = await task
    assert result.outcome is FlowOutcome.SIGNED
    answer = await inbox.submit_passcode(flow.flow_id, right)
    assert answer.kind is AnswerKind.NO_SUCH_FLOW


def test_pades_validation_keeps_pyhanko_logs_out_of_the_application_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without trust roots pyHanko logs a path-building failure naming the certificate
    subject (with the ID document number); none of it may reach the app's log."""
    import logging

    from qes_async import make_pdf
    from qes_async._flow.pades import validate_pdf
    from qes_async.sandbox._signing import SignerIdentity, sign_pdf

    signed = tmp_path / "signed.pdf"
    signed.write_bytes(sign_pdf(make_pdf("x"), SignerIdentity("Jane", "Doe", "NX1234567")))
    caplog.set_level(logging.DEBUG)
    result = validate_pdf(signed, expected_name="Jane Doe")
    assert result.outcome == "untrusted"
    assert not [r for r in caplog.records if r.name.startswith("pyhanko")]
    assert "NX1234567" not in caplog.text


def test_pades_validation_is_remembered_by_content(tmp_path: Path) -> None:
    """The same signed bytes are validated once: the second check needs no file at all."""
    from qes_async import make_pdf
    from qes_async._flow.pades import validate_pdf_once
    from qes_async.sandbox._signing import SignerIdentity, sign_pdf

    data = sign_pdf(make_pdf("remembered"), SignerIdentity("Jane", "Doe", "NX7654321"))
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    first = validate_pdf_once(signed, digest, expected_name="Jane Doe")
    signed.unlink()
    assert validate_pdf_once(signed, digest, expected_name="Jane Doe") == first
    with pytest.raises(FileNotFoundError):  # another expectation is a new check
        validate_pdf_once(signed, digest, expected_name="John Roe")


async def test_the_result_names_the_signer_read_from_the_certificate(tmp_path: Path) -> None:
    from qes_async.sandbox import IdentityCase

    async with world(tmp_path) as w:
        w.sandbox.add_client("ada", IdentityCase(first_name="Ada", last_name="Lovelace"))
        result = await w.flow("ada").run()
    assert [d.signer for d in result.documents] == ["Ada Lovelace"]


@pytest.mark.parametrize(
    ("mobile", "document", "field"),
    [
        ("0612345678", None, "mobile_number"),
        (MOBILE, Document.from_bytes("notes.txt", b"not a pdf"), "documents"),
    ],
)
async def test_bad_input_is_refused_before_any_workflow_exists(
    tmp_path: Path, mobile: str, document: Document | None, field: str
) -> None:
    from qes_async import InvalidInputError, MemoryFlowStore

    store = MemoryFlowStore()
    async with world(tmp_path) as w:
        flow = w.flow(
            mobile_number=mobile,
            store=store,
            **({"documents": [document]} if document else {}),
        )
        with pytest.raises(InvalidInputError) as info:
            await flow.run()
        assert info.value.field.startswith(field)
        assert w.sandbox.request_log == []  # nothing was created, nothing uploaded
    assert await store.unfinished() == []


async def test_events_iterator_made_before_run_gets_every_event_and_ends(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = w.flow()
        events = flow.events()  # not iterated until the run is over
        result = await flow.run()
        kinds = [e.kind.value async for e in events]
    assert result.outcome is FlowOutcome.SIGNED
    assert kinds[-1] == "finished"
    assert "document_downloaded" in kinds


async def test_events_iterator_ends_when_the_run_fails_before_starting(tmp_path: Path) -> None:
    import asyncio

    from qes_async import InvalidInputError

    async with world(tmp_path) as w:
        flow = w.flow(mobile_number="not a number")
        events = flow.events()
        with pytest.raises(InvalidInputError):
            await flow.run()
        assert await asyncio.wait_for(_collect(events), 5) == []


async def _collect(events: Any) -> list[Any]:
    return [e async for e in events]


async def test_a_signer_whose_acknowledge_fails_is_logged_and_the_flow_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path) as w:
        signer = w.signer()

        async def broken(request: Any, answer: Any) -> None:
            raise RuntimeError("the page that was told is gone")

        signer.acknowledge = broken  # type: ignore[method-assign]
        result = await w.flow(signer=signer).run()
    assert result.outcome is FlowOutcome.SIGNED
    assert "acknowledge() failed (RuntimeError)" in caplog.text


async def test_a_resume_after_a_refused_document_ends_the_same_way(tmp_path: Path) -> None:
    store = MemoryFlowStore()
    async with world(tmp_path) as w:
        flow = w.flow(require_valid_signature=True, store=store)
        with pytest.raises(DocumentCheckError, match="did not validate \\(untrusted"):
            await flow.run()
        again = await SignatureFlow.resume(
            flow.flow_id,
            documents=[Document.from_bytes("loan.pdf", make_pdf("Loan"))],
            **w.resume_kw(store, require_valid_signature=True),
        )
        result = await again.run()  # an ended flow reports its stored outcome
        downloads = sum(1 for r in w.sandbox.request_log if r.route == "download_signed_document")
    assert result.outcome is FlowOutcome.FAILED
    assert [d.validation for d in result.documents] == ["untrusted"]
    assert downloads == 1  # the resume read the stored record; it fetched nothing again
