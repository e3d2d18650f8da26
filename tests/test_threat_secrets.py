"""Threat model: secrets in traces, and files where they belong.

The client secret, the bearer token, the passcode and the mobile number must not reach a
log, a repr, an error message or an error tracker. This module defends against:

- the SDK's own frames holding a secret as a plain local while a request is in flight
  (Sentry, rich tracebacks and loguru's ``diagnose`` record the locals of every frame of
  a traceback): secrets wait in :class:`~qes_async._core.redact.Secret` holders, whose repr is
  ``Secret('***')``, and headers and bodies are built inside the call;
- a service that echoes a secret back in an error body: the literal client secret, the
  live token and the passcode sent are cut from the excerpt, ``service_message``,
  ``.errors`` and ``.raw``, as are form-encoded fields (``access_token=...``);
- a refused secret, a wrong passcode or the mobile number showing in an error or a repr;
- a download's temp file readable by others while written; a server-chosen name or a
  planted symlink putting bytes outside the destination.
"""

from __future__ import annotations

import asyncio
import pickle
import stat
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ACCESS_TOKEN, CLIENT_SECRET, FakeAPI, register_secret
from frame_locals import leaks as _leaks
from frame_locals import sdk_frame_locals as _sdk_frame_locals
from frame_locals import shown as _shown

from qes_async import (
    AuthenticationError,
    BadRequestError,
    CallbackSigner,
    ConsentRequest,
    Document,
    FakeClock,
    FlowOutcome,
    InvalidPasscodeError,
    PasscodeRequest,
    PollingWaiter,
    QESClient,
    QESError,
    RetryPolicy,
    SignatureFlow,
    SignerAnswer,
    SignerInbox,
    asgi,
    make_pdf,
)
from qes_async._core.redact import Secret, reveal
from qes_async._runtime import telemetry
from qes_async.sandbox import SandboxServer

SIG = "sig-1"
DOC_PATH = "/v1/signatures/{id}/documents/{doc}"
MOBILE = "+31698765432"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_temp_file_of_a_download_is_0600_while_written(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    pdf = make_pdf(padding=200_000)
    half_sent, go_on = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = len(pdf)
        await response.prepare(request)
        await response.write(pdf[:100_000])
        half_sent.set()
        await go_on.wait()
        await response.write(pdf[100_000:])
        return response

    fake_api.add("GET", DOC_PATH, slow)
    async with fake_api.client() as client:
        download = asyncio.create_task(client.download_signed_document(SIG, "d-1", tmp_path))
        await asyncio.wait_for(half_sent.wait(), 10)
        for _ in range(200):  # the client writes the first chunk off the loop
            parts = list(tmp_path.glob(".qes-*.part"))
            if parts and parts[0].stat().st_size > 0:
                break
            await asyncio.sleep(0.01)
        assert len(parts) == 1
        assert _mode(parts[0]) == 0o600
        go_on.set()
        signed = await asyncio.wait_for(download, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["d-1.pdf"]
    assert _mode(signed.path) == 0o600


async def test_a_symlink_in_the_destination_is_never_followed(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    target = outside / "victim.txt"
    target.write_bytes(b"untouched")
    (dest / "contract.pdf").symlink_to(target)
    pdf = make_pdf("signed")
    fake_api.add(
        "GET",
        DOC_PATH,
        lambda r: web.Response(
            body=pdf,
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": 'attachment; filename="contract.pdf"',
            },
        ),
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", dest)
    # The name is taken (by the link), so the download takes its own name beside it.
    assert signed.path == dest / "contract-d-1.pdf"
    assert not signed.path.is_symlink()
    assert signed.path.read_bytes() == pdf
    assert target.read_bytes() == b"untouched"
    assert [p.name for p in outside.iterdir()] == ["victim.txt"]


@pytest.mark.parametrize(
    "name", ["../../escape.pdf", "/tmp/abs.pdf", "..\\..\\win.pdf", "sub/dir/x.pdf"]
)
async def test_a_server_file_name_never_leaves_the_destination(
    fake_api: FakeAPI, tmp_path: Path, name: str
) -> None:
    dest = tmp_path / "a" / "dest"
    dest.mkdir(parents=True)
    fake_api.add(
        "GET",
        DOC_PATH,
        lambda r: web.Response(
            body=make_pdf(),
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        ),
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", dest)
    assert signed.path.parent == dest
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [signed.path]


async def test_a_refused_secret_is_never_in_the_error_or_the_client_repr(
    fake_api: FakeAPI,
) -> None:
    wrong = "wrong-secret-value-123"
    register_secret(wrong)
    async with fake_api.client() as good:
        assert CLIENT_SECRET not in repr(good)
    async with QESClient(
        "cid",
        wrong,
        base_url=str(fake_api.server.make_url("")).rstrip("/"),  # type: ignore[attr-defined]
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_signature_status(SIG)
        assert wrong not in repr(client)
    for text in (str(info.value), repr(info.value), repr(info.value.__dict__)):
        assert wrong not in text


async def test_a_wrong_passcode_and_the_mobile_number_never_show_in_errors_or_reprs(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with SandboxServer(clock=clock, seed=5) as sandbox:
        register_secret(sandbox.client_secret, MOBILE)
        sandbox.add_client("c-1")
        async with QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client:
            sig = (await client.create_workflow("c-1")).workflow_id
            await clock.sleep(1)
            await client.upload_documents(sig, [Document.from_bytes("a.pdf", make_pdf())])
            await client.upload_mobile_number(sig, MOBILE)
            details = await client.get_signature_details(sig)
            await client.approve_documents(sig, details)
            right = sandbox.latest_passcode(sig)
            wrong = "".join("1" if c != "1" else "2" for c in right)
            register_secret(right, wrong)
            with pytest.raises(InvalidPasscodeError) as info:
                await client.confirm_signature(sig, wrong)
            flow = SignatureFlow(
                client,
                mobile_number=MOBILE,
                client_reference="c-1",
                signer=_NoSigner(),
                download_dir=tmp_path,
            )
            texts = [str(info.value), repr(info.value), repr(flow), repr(details)]
            texts += [repr(record) for record in sandbox.sms_outbox]
    for text in texts:
        for secret in (sandbox.client_secret, MOBILE, right, wrong):
            assert secret not in text


class _NoSigner:
    async def consent(self, request: object) -> bool:
        raise AssertionError("not used")


# ------------------------------------------------------------------ locals of the frames


async def _drop(request: web.Request) -> web.StreamResponse:
    """Accept the request, then hang up without an answer (an ordinary network failure)."""
    await request.read()
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def test_no_frame_of_a_failed_token_request_holds_the_client_secret(
    fake_api: FakeAPI,
) -> None:
    fake_api.token_handler = _drop
    async with fake_api.client(retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(QESError) as info:
            await client.get_signature_status(SIG)
    assert _sdk_frame_locals(info.value)  # the scan saw the SDK's frames
    assert _leaks(info.value, CLIENT_SECRET) == []


async def test_no_frame_of_a_failed_call_holds_the_bearer_token(fake_api: FakeAPI) -> None:
    fake_api.add("GET", "/v1/signatures/{id}/status", _drop)
    async with fake_api.client(retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(QESError) as info:
            await client.get_signature_status(SIG)
    # The frames that built the attempt and sent it were seen (the sender's loop, which
    # sends an ordinary call in one await, and the adapter's fetch).
    functions = {function for function, _, _ in _sdk_frame_locals(info.value)}
    assert {"call", "fetch"} <= functions, functions
    assert _leaks(info.value, ACCESS_TOKEN, CLIENT_SECRET) == []


async def test_no_frame_of_a_failed_confirmation_holds_the_passcode(fake_api: FakeAPI) -> None:
    passcode = "73914682"
    register_secret(passcode)
    fake_api.add("POST", "/v1/signatures/{id}/confirmation", _drop)
    async with fake_api.client() as client:
        with pytest.raises(QESError) as info:
            await client.confirm_signature(SIG, passcode)
    assert any(f == "confirm_signature" for f, _, _ in _sdk_frame_locals(info.value))
    assert _leaks(info.value, passcode, ACCESS_TOKEN) == []


async def test_no_frame_of_a_failed_mobile_upload_holds_the_number(fake_api: FakeAPI) -> None:
    fake_api.add("PUT", "/v1/signatures/{id}/mobile-number", _drop)
    async with fake_api.client(retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(QESError) as info:
            await client.upload_mobile_number(SIG, MOBILE)
    assert any(f == "upload_mobile_number" for f, _, _ in _sdk_frame_locals(info.value))
    assert _leaks(info.value, MOBILE, ACCESS_TOKEN) == []


async def test_a_refused_passcode_format_keeps_the_passcode_out_of_the_frames(
    fake_api: FakeAPI,
) -> None:
    attempt = "12 34 56 78"
    register_secret(attempt)
    async with fake_api.client() as client:
        with pytest.raises(QESError) as info:
            await client.confirm_signature(SIG, attempt)
    assert _leaks(info.value, attempt) == []


def test_the_locals_scan_finds_a_planted_secret() -> None:
    """Negative control: a frame that does hold the secret is reported."""

    def careless(secret: str) -> None:
        raise RuntimeError("boom")

    try:
        careless(CLIENT_SECRET)
    except RuntimeError as exc:
        tb = exc.__traceback__
        assert tb is not None
        frames = []
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        texts = [t for f in frames for v in f.f_locals.values() for t in _shown(v)]
        assert CLIENT_SECRET in texts


def test_a_secret_holder_shows_nothing_and_refuses_pickling() -> None:
    held = Secret(CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(held)
    assert CLIENT_SECRET not in str(held)
    assert CLIENT_SECRET not in f"{held}"
    assert held.reveal() == CLIENT_SECRET
    with pytest.raises(TypeError):
        pickle.dumps(held)


# ------------------------------------------------------------- secrets echoed by a server


async def test_secrets_echoed_in_an_error_body_are_cut_everywhere_it_shows(
    fake_api: FakeAPI,
) -> None:
    passcode = "58203716"
    register_secret(passcode)

    async def echo(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].split()[1]
        body = {
            "code": "bad_request",
            "message": f"client {CLIENT_SECRET} sent passcode {passcode}",
            "error_description": token,
            "hint": f"access_token={token}&token_type=Bearer",
            "errors": [{"code": "x", "message": f"was {passcode}", "field": token}],
            "client_secret": CLIENT_SECRET,
        }
        return web.json_response(body, status=400)

    fake_api.add("POST", "/v1/signatures/{id}/confirmation", echo)
    async with fake_api.client() as client:
        with pytest.raises(BadRequestError) as info:
            await client.confirm_signature(SIG, passcode)
    error = info.value
    shown = [str(error), repr(error), error.body_excerpt, str(error.service_message)]
    shown += [repr(error.errors), repr(error.raw), repr(error.__dict__)]
    for text in shown:
        for secret in (CLIENT_SECRET, ACCESS_TOKEN, passcode):
            assert secret not in text, (secret, text)
    assert error.code == "bad_request"  # the rest of the answer is kept
    assert error.errors[0].code == "x"


async def test_a_form_encoded_token_in_an_error_body_is_masked(fake_api: FakeAPI) -> None:
    leaked = "tok-from-elsewhere-9f8e7d"
    register_secret(leaked)

    async def form(request: web.Request) -> web.Response:
        return web.Response(
            text=f"access_token={leaked}&token_type=bearer", status=502, content_type="text/plain"
        )

    fake_api.add("GET", "/v1/signatures/{id}/details", form)
    async with fake_api.client(retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(QESError) as info:
            await client.get_signature_details(SIG)
    assert leaked not in str(info.value)
    assert "access_token=***" in str(info.value)


async def test_a_request_id_that_echoes_a_secret_is_cut(
    fake_api: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].split()[1]
        status = 400 if request.path.endswith("details") else 200
        body = {"signatureId": SIG, "status": "pending"} if status == 200 else {"code": "x"}
        return web.json_response(body, status=status, headers={"X-Request-Id": f"id-{token}"})

    fake_api.add("GET", "/v1/signatures/{id}/status", echo)
    fake_api.add("GET", "/v1/signatures/{id}/details", echo)
    import logging

    with caplog.at_level(logging.DEBUG, logger="qes_async"):
        async with fake_api.client() as client:
            report = await client.get_signature_status(SIG)
            with pytest.raises(BadRequestError) as info:
                await client.get_signature_details(SIG)
    shown = [repr(report), str(report.request_id), str(info.value), repr(info.value.__dict__)]
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        assert ACCESS_TOKEN not in text, text
    assert report.request_id == "id-***"


# ---------------------------------------------- a passcode submitted from the signer's page


class _StoppingClock(FakeClock):
    """A clock that fails once told to: the failure lands where the passcode is held."""

    stopped = False

    def time(self) -> float:
        if self.stopped:
            raise RuntimeError("the clock failed")
        return super().time()


def _passcode_question(flow_id: str = "flow-1") -> PasscodeRequest:
    return PasscodeRequest(flow_id, SIG, 1, deadline=FakeClock.DEFAULT_START + 3600)


async def _asked(inbox: SignerInbox, flow_id: str) -> None:
    for _ in range(200):
        if inbox.pending(flow_id) is not None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the flow never asked")


async def test_no_frame_of_a_failing_inbox_submission_holds_the_passcode() -> None:
    passcode = "61842957"
    register_secret(passcode)
    clock = _StoppingClock()
    inbox = SignerInbox(clock=clock, answer_timeout=1.0)
    asking = asyncio.ensure_future(inbox.passcode(_passcode_question()))
    await _asked(inbox, "flow-1")
    clock.stopped = True
    with pytest.raises(RuntimeError) as info:
        await inbox.submit_passcode("flow-1", passcode)
    clock.stopped = False
    asking.cancel()
    assert {"submit_passcode", "_submit"} <= {f for f, _, _ in _sdk_frame_locals(info.value)}
    assert _leaks(info.value, passcode) == []


async def test_the_future_handing_a_passcode_to_the_flow_never_shows_it() -> None:
    passcode = "50718263"
    register_secret(passcode)
    inbox = SignerInbox(clock=FakeClock(), answer_timeout=5.0)
    question = _passcode_question()
    asking = asyncio.ensure_future(inbox.passcode(question))
    await _asked(inbox, "flow-1")
    submitting = asyncio.ensure_future(inbox.submit_passcode("flow-1", passcode))
    assert await asking == passcode  # the flow gets the text itself
    slot = inbox._answered["flow-1"]  # waiting for the flow's verdict
    assert passcode not in repr(slot.value)
    submitting.cancel()  # the page's client went away while the flow used the passcode
    with pytest.raises(asyncio.CancelledError) as info:
        await submitting
    assert "_submit" in {f for f, _, _ in _sdk_frame_locals(info.value)}
    assert _leaks(info.value, passcode) == []


async def test_no_frame_of_the_asgi_passcode_helper_holds_the_passcode() -> None:
    passcode = "39260714"
    register_secret(passcode)
    received: list[object] = []

    class BrokenInbox:
        async def submit_passcode(self, flow_id: str, code: object) -> SignerAnswer:
            received.append(code)
            raise RuntimeError("the inbox failed")

    with pytest.raises(RuntimeError) as info:
        await asgi.submit_passcode(BrokenInbox(), "flow-1", f"  {passcode} ")  # type: ignore[arg-type]
    assert any(f == "submit_passcode" for f, _, _ in _sdk_frame_locals(info.value))
    assert _leaks(info.value, passcode) == []
    assert [reveal(code) for code in received] == [passcode]  # type: ignore[arg-type]


async def test_no_frame_of_a_flow_failing_after_the_signer_answered_holds_the_passcode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer answers in its own task; a failure right after (here the wait's span)
    finds that finished task in the flow's frame, and its repr shows its result."""
    clock = FakeClock()
    async with SandboxServer(clock=clock, seed=5) as sandbox:
        register_secret(sandbox.client_secret, MOBILE)
        sandbox.add_client("c-1")
        async with QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client:
            inbox = SignerInbox(clock=clock, answer_timeout=1.0)
            flow = SignatureFlow(
                client,
                mobile_number=MOBILE,
                client_reference="c-1",
                documents=[Document.from_bytes("a.pdf", make_pdf())],
                signer=inbox,
                download_dir=tmp_path,
                clock=clock,
            )
            running = asyncio.ensure_future(flow.run())
            while not isinstance(inbox.pending(flow.flow_id), ConsentRequest):
                await asyncio.sleep(0.001)
            assert (await inbox.submit_consent(flow.flow_id, True)).accepted
            while not isinstance(question := inbox.pending(flow.flow_id), PasscodeRequest):
                await asyncio.sleep(0.001)
            passcode = sandbox.latest_passcode(question.signature_id)
            register_secret(passcode)

            def failing(self: object, value: str) -> None:
                if value == "answered":
                    raise RuntimeError("the span failed")

            monkeypatch.setattr(telemetry._Off, "outcome", failing)
            submitting = asyncio.ensure_future(inbox.submit_passcode(flow.flow_id, passcode))
            with pytest.raises(RuntimeError) as info:
                await running
            submitting.cancel()
    assert "_ask" in {f for f, _, _ in _sdk_frame_locals(info.value)}
    assert _leaks(info.value, passcode) == []


async def test_a_signer_that_hands_back_a_secret_signs(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SandboxServer(clock=clock, seed=5) as sandbox:
        register_secret(sandbox.client_secret, MOBILE)
        sandbox.add_client("c-1")
        async with QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client:
            signer = CallbackSigner(
                consent=lambda request: True,
                passcode=lambda request: Secret(sandbox.latest_passcode(request.signature_id)),
            )
            result = await SignatureFlow(
                client,
                mobile_number=MOBILE,
                client_reference="c-1",
                documents=[Document.from_bytes("a.pdf", make_pdf())],
                signer=signer,
                waiter=PollingWaiter(client, clock=clock),
                download_dir=tmp_path,
                clock=clock,
            ).run()
    assert result.outcome is FlowOutcome.SIGNED


async def test_no_frame_of_the_cli_waiting_for_a_new_passcode_file_holds_the_last_try(
    tmp_path: Path,
) -> None:
    import argparse

    from qes_async._cli.main import CLIError, _AnswersSigner

    passcode = "84061937"
    register_secret(passcode)
    code_file = tmp_path / "code.txt"
    code_file.write_text(passcode + "\n")
    signer = _AnswersSigner(
        argparse.Namespace(consent="yes", passcode_from=str(code_file), selfie=None)
    )
    assert reveal(await signer.passcode(_passcode_question())) == passcode
    # Refused: the file still holds that try when the deadline passes.
    past = PasscodeRequest("flow-1", SIG, 1, deadline=0.0)
    with pytest.raises(CLIError) as info:
        await signer.passcode(past)
    assert "_from_file" in {f for f, _, _ in _sdk_frame_locals(info.value)}
    assert _leaks(info.value, passcode) == []
