"""qes_async.asgi: the receiver as a pure ASGI app answers exactly as the aiohttp routes do,
and the signer-page helpers turn a SignerInbox into plain JSON-able data."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp.test_utils import TestServer
from conftest import register_secret

from qes_async import (
    AnswerKind,
    ConsentRequest,
    DocumentInfo,
    FakeClock,
    LegalCondition,
    PasscodeRequest,
    SignerAnswer,
    SignerInbox,
    Status,
    WebhookDispatcher,
)
from qes_async.asgi import (
    WebhookApp,
    answer_status,
    pending_question,
    starlette_routes,
    submit_consent,
    submit_passcode,
    webhook_app,
)
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver

SID = "4f1c2d9e-0000-4000-8000-0000000000a5"
PATH = f"/fourthline/qes/{SID}"
USER, PASSWORD = "fourthline", "asgi-password-7d3a"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
JSON = {"Content-Type": "application/json"}
GOOD = json.dumps({"signatureId": SID, "status": "signed"}).encode()


def make(**kw: Any) -> tuple[WebhookReceiver, WebhookDispatcher]:
    register_secret(PASSWORD)
    dispatcher = WebhookDispatcher(clock=FakeClock())
    return WebhookReceiver(dispatcher, BasicAuth(USER, PASSWORD), **kw), dispatcher


def published(dispatcher: WebhookDispatcher) -> list[Status]:
    with dispatcher.subscribe(SID) as subscription:
        return [e.status for e in subscription.drain()]


# (method, path, headers, body) -> the same answer from both adapters.
CASES: dict[str, tuple[str, str, dict[str, str], bytes]] = {
    "good": ("POST", PATH, {**BASIC, **JSON}, GOOD),
    "no credentials": ("POST", PATH, JSON, GOOD),
    "wrong password": (
        "POST",
        PATH,
        {"Authorization": "Basic " + base64.b64encode(b"fourthline:nope").decode(), **JSON},
        GOOD,
    ),
    "too large": ("POST", PATH, {**BASIC, **JSON}, b" " * 2000),
    "bad id": ("POST", "/fourthline/qes/a%20b", {**BASIC, **JSON}, GOOD),
    "dot id": ("POST", "/fourthline/qes/%2e%2e", {**BASIC, **JSON}, GOOD),
    "get": ("GET", PATH, BASIC, b""),
    "not json": ("POST", PATH, {**BASIC, "Content-Type": "text/plain"}, GOOD),
    "malformed": ("POST", PATH, {**BASIC, **JSON}, b"{"),
    "id mismatch": (
        "POST",
        PATH,
        {**BASIC, **JSON},
        json.dumps({"signatureId": "other", "status": "signed"}).encode(),
    ),
    "bad status": ("POST", PATH, {**BASIC, **JSON}, json.dumps({"status": 3}).encode()),
}


def _kept_headers(headers: Any) -> dict[str, str]:
    keep = ("content-type", "www-authenticate", "allow")
    return {k.lower(): v for k, v in headers.items() if k.lower() in keep}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_asgi_app_answers_as_the_aiohttp_routes(case: str) -> None:
    method, path, headers, body = CASES[case]
    via_aiohttp, aio_dispatcher = make(max_body=1024)
    async with TestServer(via_aiohttp.aiohttp_app()) as server, aiohttp.ClientSession() as s:
        url = server.make_url("/").with_path(path, encoded=True)
        async with s.request(method, url, headers=headers, data=body) as response:
            expected = (response.status, await response.read(), _kept_headers(response.headers))
    via_asgi, asgi_dispatcher = make(max_body=1024)
    transport = httpx.ASGITransport(app=webhook_app(via_asgi))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        answer = await http.request(method, path, headers=headers, content=body)
    assert (answer.status_code, answer.content, _kept_headers(answer.headers)) == expected
    assert via_asgi.refusals == via_aiohttp.refusals
    assert published(asgi_dispatcher) == published(aio_dispatcher)


async def test_a_good_webhook_is_204_and_published_to_the_dispatcher() -> None:
    receiver, dispatcher = make()
    transport = httpx.ASGITransport(app=WebhookApp(receiver))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        answer = await http.post(PATH, content=GOOD, headers={**BASIC, **JSON})
    assert answer.status_code == 204
    assert answer.content == b""
    assert published(dispatcher) == [Status.SIGNED]
    assert (receiver.accepted, receiver.refused) == (1, 0)


class Receive:
    """An ASGI ``receive`` that hands out ``chunks`` (then stalls) and counts the calls."""

    def __init__(self, *chunks: bytes, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.stall = stall
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.chunks:
            chunk = self.chunks.pop(0)
            more = bool(self.chunks) or self.stall
            return {"type": "http.request", "body": chunk, "more_body": more}
        if self.stall:
            await asyncio.sleep(5)
        return {"type": "http.disconnect"}


def scope(path: str = PATH, headers: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        **extra,
    }


async def call(app: Any, the_scope: dict[str, Any], receive: Receive) -> tuple[int, dict, bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(the_scope, receive, send)
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body["body"]


async def test_401_without_credentials_before_any_body_byte_is_asked_for() -> None:
    receiver, dispatcher = make()
    receive = Receive(GOOD)
    status, headers, body = await call(WebhookApp(receiver), scope(headers=JSON), receive)
    assert status == 401
    assert receive.calls == 0
    assert headers["www-authenticate"].startswith("Basic ")
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "unauthorized"
    assert published(dispatcher) == []


async def test_413_reads_no_more_than_the_limit() -> None:
    receiver, _ = make(max_body=100)
    receive = Receive(b" " * 60, b" " * 60, b" " * 60, b" " * 60)
    status, headers, body = await call(
        WebhookApp(receiver), scope(headers={**BASIC, **JSON}), receive
    )
    assert status == 413
    assert receive.calls == 2  # the third chunk is never asked for
    assert headers["connection"] == "close"
    assert json.loads(body)["error"] == "payload_too_large"


async def test_413_on_a_declared_length_before_any_body_byte() -> None:
    receiver, _ = make(max_body=100)
    receive = Receive(GOOD)
    hdrs = {**BASIC, **JSON, "Content-Length": "5000"}
    status, _, _ = await call(WebhookApp(receiver), scope(headers=hdrs), receive)
    assert status == 413
    assert receive.calls == 0


async def test_408_on_a_stalled_body_within_body_timeout() -> None:
    receiver, dispatcher = make(body_timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    the_scope = scope(headers={**BASIC, **JSON})
    status, headers, body = await call(WebhookApp(receiver), the_scope, Receive(b"{", stall=True))
    assert 0.15 < loop.time() - started < 1.0
    assert status == 408
    assert json.loads(body)["error"] == "body_timeout"
    assert headers["connection"] == "close"
    assert receiver.refusals == {"body_timeout": 1}
    assert published(dispatcher) == []


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/fourthline/qes/..", "/fourthline/qes/%2e%2e"),
        ("/fourthline/qes/a\x00b", "/fourthline/qes/a%00b"),
        ("/fourthline/qes/" + "x" * 129, "/fourthline/qes/" + "x" * 129),
        ("/elsewhere/" + SID, "/elsewhere/" + SID),
    ],
)
async def test_404_for_bad_ids_and_other_paths(path: str, raw: str) -> None:
    receiver, dispatcher = make()
    the_scope = scope(path, {**BASIC, **JSON}, raw_path=raw.encode())
    receive = Receive(GOOD)
    status, _, body = await call(WebhookApp(receiver), the_scope, receive)
    assert status == 404
    assert json.loads(body)["error"] == "not_found"
    assert receive.calls == 0
    assert published(dispatcher) == []


async def test_a_raw_path_that_decodes_to_a_good_id_is_still_404() -> None:
    receiver, _ = make()
    encoded = "/fourthline/qes/" + "".join(f"%{ord(c):02x}" for c in SID)
    the_scope = scope(PATH, {**BASIC, **JSON}, raw_path=encoded.encode())
    status, _, _ = await call(WebhookApp(receiver), the_scope, Receive(GOOD))
    assert status == 404


async def test_a_client_that_goes_away_mid_body_gets_no_answer_and_nothing_published() -> None:
    receiver, dispatcher = make()
    sent: list[Any] = []
    messages = [
        {"type": "http.request", "body": b'{"status":', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await WebhookApp(receiver)(scope(headers={**BASIC, **JSON}), receive, send)
    assert sent == []
    assert messages == []
    assert published(dispatcher) == []
    assert (receiver.accepted, receiver.refused) == (0, 0)


async def test_mounted_in_fastapi_at_a_leading_part_of_the_prefix() -> None:
    from fastapi import FastAPI

    receiver, dispatcher = make()
    app = FastAPI()
    app.mount("/fourthline", webhook_app(receiver))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        refused = await http.post(PATH, content=GOOD, headers=JSON)
        wrong_method = await http.get(PATH, headers=BASIC)
        accepted = await http.post(PATH, content=GOOD, headers={**BASIC, **JSON})
    assert refused.status_code == 401
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
    assert accepted.status_code == 204
    assert published(dispatcher) == [Status.SIGNED]


async def test_mounted_elsewhere_is_404_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    receiver, _ = make()
    app = Starlette(routes=[Mount("/hooks", webhook_app(receiver))])
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.WARNING, logger="qes_async.asgi"):
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            for _ in range(2):
                answer = await http.post(f"/hooks/qes/{SID}", content=GOOD, headers=BASIC | JSON)
                assert answer.status_code == 404
    warnings = [r for r in caplog.records if "mounted at '/hooks'" in r.getMessage()]
    assert len(warnings) == 1


async def test_starlette_routes_serve_the_token_endpoint_with_bearer_auth() -> None:
    from starlette.applications import Starlette

    register_secret(PASSWORD)
    receiver = WebhookReceiver(WebhookDispatcher(clock=FakeClock()), BearerAuth(USER, PASSWORD))
    app = Starlette(routes=starlette_routes(receiver))
    transport = httpx.ASGITransport(app=app)
    form = {"grant_type": "client_credentials"}
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        assert (await http.post(receiver.token_path, data=form)).status_code == 401
        issued = await http.post(receiver.token_path, data=form, headers=BASIC)
        assert issued.status_code == 200
        token = issued.json()["access_token"]
        register_secret(token)
        bearer = {"Authorization": f"Bearer {token}", **JSON}
        assert (await http.post(PATH, content=GOOD, headers=bearer)).status_code == 204
        wrong_method = await http.get(PATH, headers=bearer)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


async def test_lifespan_is_acknowledged_so_the_app_can_be_served_alone() -> None:
    receiver, _ = make()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await WebhookApp(receiver)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_module_imports_no_web_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, qes_async.asgi\n"
        "bad = [m for m in ('starlette', 'fastapi') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


# ------------------------------------------------------------------------- signer pages

DEADLINE = FakeClock.DEFAULT_START + 300
CONSENT = ConsentRequest(
    flow_id="flow-1",
    signature_id=SID,
    generation=1,
    documents=(DocumentInfo(document_id="d1", file_name="loan.pdf", display_name="Loan"),),
    legal_conditions=(
        LegalCondition(id="tc", version="3", title="Terms", url="https://x/t", text="Be nice"),
    ),
    deadline=DEADLINE,
    masked_mobile_number="+31******678",
)
PASSCODE = PasscodeRequest(
    flow_id="flow-1",
    signature_id=SID,
    generation=1,
    deadline=DEADLINE,
    masked_mobile_number="+31******678",
    length=6,
    attempts_left=2,
    retry=True,
)


async def test_pending_question_describes_consent_then_passcode_as_json() -> None:
    inbox = SignerInbox(clock=FakeClock(), answer_timeout=1.0)
    assert pending_question(inbox, "flow-1") == {"waiting_for": None}
    asking = asyncio.ensure_future(inbox.consent(CONSENT))
    await asyncio.sleep(0)
    question = pending_question(inbox, "flow-1")
    json.dumps(question)  # JSON-able
    assert question == {
        "waiting_for": "consent",
        "signature_id": SID,
        "deadline": DEADLINE,
        "sent_to": "+31******678",
        "documents": [{"file_name": "loan.pdf", "display_name": "Loan"}],
        "legal_conditions": [
            {"id": "tc", "title": "Terms", "version": "3", "url": "https://x/t", "text": "Be nice"}
        ],
    }
    answering = asyncio.ensure_future(submit_consent(inbox, "flow-1", True))
    assert await asking is True
    await inbox.acknowledge(CONSENT, SignerAnswer(AnswerKind.ACCEPTED))
    answer = await answering
    assert answer == {"result": "accepted", "accepted": True, "attempts_left": None,
                      "message": "Accepted."}  # fmt: skip
    assert answer_status(answer) == 200

    asking_code = asyncio.ensure_future(inbox.passcode(PASSCODE))
    await asyncio.sleep(0)
    question = pending_question(inbox, "flow-1")
    assert question["waiting_for"] == "passcode"
    assert question["feedback"] == "Wrong passcode. 2 attempts left."
    assert (question["length"], question["attempts_left"], question["retry"]) == (6, 2, True)
    answering = asyncio.ensure_future(submit_passcode(inbox, "flow-1", " 123456 "))
    assert await asking_code == "123456"
    await inbox.acknowledge(PASSCODE, SignerAnswer(AnswerKind.WRONG_PASSCODE, attempts_left=1))
    answer = await answering
    assert answer["result"] == "wrong_passcode"
    assert answer["attempts_left"] == 1
    assert "123456" not in json.dumps(answer)
    assert answer_status(answer) == 422


async def test_bad_submissions_are_invalid_and_never_reach_the_flow() -> None:
    inbox = SignerInbox(clock=FakeClock(), answer_timeout=1.0)
    asking = asyncio.ensure_future(inbox.passcode(PASSCODE))
    await asyncio.sleep(0)
    for bad in (None, "", "   ", 123456, "1" * 65, "12\n34"):
        answer = await submit_passcode(inbox, "flow-1", bad)
        assert answer["result"] == "invalid", bad
        assert answer_status(answer) == 400
    for bad_approve in ("yes", 1, None):
        answer = await submit_consent(inbox, "flow-1", bad_approve)
        assert answer["result"] == "invalid"
    assert pending_question(inbox, "flow-1")["waiting_for"] == "passcode"
    assert not asking.done()
    not_asked = await submit_consent(inbox, "flow-1", True)
    assert (not_asked["result"], answer_status(not_asked)) == ("not_asked", 409)
    unknown = await submit_passcode(inbox, "nope", "123456")
    assert (unknown["result"], answer_status(unknown)) == ("no_such_flow", 404)
    asking.cancel()


async def test_a_webhook_through_the_asgi_app_is_authenticated_once() -> None:
    class CountingAuth(BasicAuth):
        checks = 0

        def check(self, headers: Any) -> Any:
            CountingAuth.checks += 1
            return super().check(headers)

    register_secret(PASSWORD)
    receiver = WebhookReceiver(WebhookDispatcher(clock=FakeClock()), CountingAuth(USER, PASSWORD))
    status, _, _ = await call(WebhookApp(receiver), scope(headers={**BASIC, **JSON}), Receive(GOOD))
    assert status == 204
    assert CountingAuth.checks == 1
    assert (receiver.accepted, receiver.refused) == (1, 0)


async def test_a_kept_answer_during_a_takeover_is_202_with_when_to_look_again() -> None:
    """With many workers the submitter may be the signer relay, which answers ``moving``
    while the flow changes workers: kept, not refused."""

    class Relay:
        async def submit_passcode(self, flow_id: str, passcode: str) -> SignerAnswer:
            return SignerAnswer(AnswerKind.MOVING, retry_after=6.5)

    answer = await submit_passcode(Relay(), "flow-1", "123456")  # type: ignore[arg-type]
    assert answer["result"] == "moving"
    assert answer["retry_after"] == 6.5
    assert "123456" not in json.dumps(answer)
    assert answer_status(answer) == 202
