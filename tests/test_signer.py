"""Signers: callbacks, the web-app inbox with typed answers, and the terminal prompt."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from qes_async import (
    AnswerKind,
    CallbackSigner,
    ConsentRequest,
    DocumentInfo,
    FakeClock,
    FlowError,
    LegalCondition,
    PasscodeRequest,
    SelfieRequest,
    Signer,
    SignerAnswer,
    SignerInbox,
    TerminalSigner,
)

DEADLINE = FakeClock.DEFAULT_START + 3600


def consent_request(flow_id: str = "flow-1") -> ConsentRequest:
    return ConsentRequest(
        flow_id=flow_id,
        signature_id="sig-1",
        generation=1,
        documents=(DocumentInfo("doc-1", "loan.pdf", "Loan contract", "ab" * 32),),
        legal_conditions=(LegalCondition("tc", 3, "QTSP terms", "https://example.com/tc"),),
        deadline=DEADLINE,
        masked_mobile_number="+31******678",
    )


def passcode_request(flow_id: str = "flow-1", **kw: object) -> PasscodeRequest:
    return PasscodeRequest(
        flow_id=flow_id, signature_id="sig-1", generation=1, deadline=DEADLINE, **kw
    )  # type: ignore[arg-type]


# ------------------------------------------------------------------------ CallbackSigner


async def test_callback_signer_takes_sync_and_async_functions() -> None:
    async def passcode(request: PasscodeRequest) -> str:
        return "123456"

    told: list[SignerAnswer] = []
    signer = CallbackSigner(
        consent=lambda request: request.documents[0].file_name == "loan.pdf",
        passcode=passcode,
        selfie=lambda request: b"\xff\xd8jpeg",
        on_answer=lambda request, answer: told.append(answer),
    )
    assert isinstance(signer, Signer)
    assert await signer.consent(consent_request()) is True
    assert await signer.passcode(passcode_request()) == "123456"
    selfie = SelfieRequest("flow-1", "sig-1", 1, DEADLINE)
    assert await signer.selfie(selfie) == b"\xff\xd8jpeg"
    await signer.acknowledge(passcode_request(), SignerAnswer(AnswerKind.WRONG_PASSCODE, 2))
    assert told == [SignerAnswer(AnswerKind.WRONG_PASSCODE, 2)]


async def test_callback_signer_without_selfie_says_what_to_do() -> None:
    signer = CallbackSigner(consent=lambda r: True, passcode=lambda r: "1")
    with pytest.raises(FlowError, match=r"Pass selfie=\.\.\. to CallbackSigner"):
        await signer.selfie(SelfieRequest("flow-1", "sig-1", 1, DEADLINE))


def test_answer_messages() -> None:
    assert SignerAnswer(AnswerKind.WRONG_PASSCODE, 2).message == "Wrong passcode. 2 attempts left."
    assert SignerAnswer(AnswerKind.ACCEPTED).accepted is True
    assert SignerAnswer(AnswerKind.EXPIRED).message == "Too late: this step expired."


# --------------------------------------------------------------------------- SignerInbox


async def _asked(inbox: SignerInbox, flow_id: str) -> None:
    for _ in range(100):
        if inbox.pending(flow_id) is not None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the flow never asked")


async def test_inbox_consent_is_taken_and_acknowledged() -> None:
    inbox = SignerInbox(clock=FakeClock())
    request = consent_request()

    async def flow() -> bool:
        approved = await inbox.consent(request)
        await inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
        return approved

    task = asyncio.ensure_future(flow())
    await _asked(inbox, "flow-1")
    assert inbox.pending("flow-1") == request
    answer = await inbox.submit_consent("flow-1", approve=True)
    assert answer == SignerAnswer(AnswerKind.ACCEPTED)
    assert await task is True
    assert inbox.pending("flow-1") is None


async def test_inbox_wrong_passcode_then_right() -> None:
    inbox = SignerInbox(clock=FakeClock())
    good = "246810"

    async def flow() -> int:
        tries, left = 0, 3
        while True:
            request = passcode_request(attempts_left=None if tries == 0 else left, retry=tries > 0)
            passcode = await inbox.passcode(request)
            tries += 1
            if passcode == good:
                await inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
                return tries
            left -= 1
            await asyncio.sleep(0)  # the flow does other work before asking again
            await inbox.acknowledge(request, SignerAnswer(AnswerKind.WRONG_PASSCODE, left))

    task = asyncio.ensure_future(flow())
    await _asked(inbox, "flow-1")
    assert await inbox.submit_passcode("flow-1", "000000") == SignerAnswer(
        AnswerKind.WRONG_PASSCODE, 2
    )
    # submitted at once, before the flow asks again: it waits for the new question
    assert await inbox.submit_passcode("flow-1", good) == SignerAnswer(AnswerKind.ACCEPTED)
    assert await task == 2


async def test_inbox_no_such_flow() -> None:
    inbox = SignerInbox(clock=FakeClock())
    assert (await inbox.submit_consent("ghost", approve=True)).kind is AnswerKind.NO_SUCH_FLOW
    assert (await inbox.submit_passcode("ghost", "1234")).kind is AnswerKind.NO_SUCH_FLOW


async def test_inbox_passcode_while_consent_is_asked_is_not_asked() -> None:
    inbox = SignerInbox(clock=FakeClock())
    task = asyncio.ensure_future(inbox.consent(consent_request()))
    await _asked(inbox, "flow-1")
    assert (await inbox.submit_passcode("flow-1", "123456")).kind is AnswerKind.NOT_ASKED
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inbox.pending("flow-1") is None


async def test_inbox_after_the_deadline_answers_expired() -> None:
    clock = FakeClock()
    inbox = SignerInbox(clock=clock)
    task = asyncio.ensure_future(inbox.consent(consent_request()))
    await _asked(inbox, "flow-1")
    clock.set_time(DEADLINE)
    assert (await inbox.submit_consent("flow-1", approve=True)).kind is AnswerKind.EXPIRED
    # the flow gives up at its deadline: the question is withdrawn, still "expired"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inbox.pending("flow-1") is None
    assert (await inbox.submit_consent("flow-1", approve=True)).kind is AnswerKind.EXPIRED


async def test_inbox_remembers_expiry_told_by_the_flow() -> None:
    inbox = SignerInbox(clock=FakeClock())
    await inbox.acknowledge(consent_request("f9"), SignerAnswer(AnswerKind.EXPIRED))
    assert (await inbox.submit_consent("f9", approve=False)).kind is AnswerKind.EXPIRED


async def test_inbox_answers_pending_when_the_flow_never_says() -> None:
    inbox = SignerInbox(clock=FakeClock(), answer_timeout=0.01)
    task = asyncio.ensure_future(inbox.consent(consent_request()))
    await _asked(inbox, "flow-1")
    assert (await inbox.submit_consent("flow-1", approve=False)).kind is AnswerKind.PENDING
    assert await task is False


async def test_inbox_selfie() -> None:
    inbox = SignerInbox(clock=FakeClock())
    request = SelfieRequest("flow-1", "sig-1", 1, DEADLINE)

    async def flow() -> bytes:
        jpeg = await inbox.selfie(request)
        await inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
        return jpeg

    task = asyncio.ensure_future(flow())
    await _asked(inbox, "flow-1")
    assert (await inbox.submit_selfie("flow-1", b"\xff\xd8")).accepted
    assert await task == b"\xff\xd8"


async def test_inbox_serves_many_flows_at_once() -> None:
    inbox = SignerInbox(clock=FakeClock(), answer_timeout=0.01)
    flows = [f"flow-{n}" for n in range(200)]
    tasks = [asyncio.ensure_future(inbox.consent(consent_request(f))) for f in flows]
    await _asked(inbox, flows[-1])
    answers = await asyncio.gather(
        *(inbox.submit_consent(f, approve=n % 2 == 0) for n, f in enumerate(flows)),
        return_exceptions=False,
    )
    assert {a.kind for a in answers} == {AnswerKind.PENDING}
    assert [await t for t in tasks] == [n % 2 == 0 for n in range(200)]


# ------------------------------------------------------------------------ TerminalSigner


async def test_terminal_signer_consent_reprompts_until_yes_or_no() -> None:
    lines = iter(["maybe", "YES"])
    out = io.StringIO()
    signer = TerminalSigner(input=lambda prompt: next(lines), output=out)
    assert await signer.consent(consent_request()) is True
    text = out.getvalue()
    assert "Loan contract (loan.pdf)" in text
    assert "accept: QTSP terms v3 https://example.com/tc" in text
    assert "Please answer yes or no." in text


async def test_terminal_signer_reads_the_passcode_without_echo() -> None:
    prompts: list[str] = []

    def secret(prompt: str) -> str:
        prompts.append(prompt)
        return " 135790\n"

    out = io.StringIO()
    signer = TerminalSigner(read_secret=secret, output=out)
    request = passcode_request(masked_mobile_number="+31******678")
    assert await signer.passcode(request) == "135790"
    assert prompts == ["Passcode sent to +31******678: "]
    await signer.acknowledge(request, SignerAnswer(AnswerKind.WRONG_PASSCODE, 1))
    assert out.getvalue() == "Wrong passcode. 1 attempts left.\n"
    assert "135790" not in out.getvalue()


async def test_terminal_signer_selfie_reads_the_file(tmp_path: Path) -> None:
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    signer = TerminalSigner(input=lambda prompt: f"{photo}\n", output=io.StringIO())
    assert await signer.selfie(SelfieRequest("f", "s", 1, DEADLINE)) == b"\xff\xd8\xff"


async def test_a_submitted_passcode_never_shows_in_the_inbox_reprs() -> None:
    from qes_async._signers.signer import _Slot

    loop = asyncio.get_running_loop()
    value: asyncio.Future[object] = loop.create_future()
    value.set_result("987654")
    slot = _Slot(None, value, loop.create_future())  # type: ignore[arg-type]
    assert "987654" not in repr(slot)


async def test_inbox_listeners_see_each_question_and_its_end() -> None:
    clock = FakeClock()
    inbox = SignerInbox(clock=clock)
    seen: list[tuple[str, object]] = []
    inbox.add_listener(lambda flow_id, request: seen.append((flow_id, request)))

    def broken(flow_id: str, request: object) -> None:
        raise RuntimeError("a listener's own trouble")

    inbox.add_listener(broken)  # logged, never reaches the flow or the other listeners
    consent = consent_request()

    async def flow() -> bool:
        approved = await inbox.consent(consent)
        await inbox.acknowledge(consent, SignerAnswer(AnswerKind.ACCEPTED))
        return approved

    task = asyncio.ensure_future(flow())
    await _asked(inbox, "flow-1")
    assert seen == [("flow-1", consent)]
    answer = await inbox.submit_consent("flow-1", approve=True)  # nothing asked any more
    assert answer == SignerAnswer(AnswerKind.ACCEPTED)
    assert await task is True
    assert seen == [("flow-1", consent), ("flow-1", None)]

    passcode = passcode_request(flow_id="flow-2")
    asking = asyncio.ensure_future(inbox.passcode(passcode))
    await _asked(inbox, "flow-2")
    asking.cancel()  # a cancelled flow takes its question back
    with pytest.raises(asyncio.CancelledError):
        await asking
    assert seen[2:] == [("flow-2", passcode), ("flow-2", None)]
