"""Threat model of the webhook receiver: what an unauthenticated or hostile caller must not do.

Each test below failed on the receiver before its defence was in place.

1. Pin handler tasks by trickling a body: no body byte is read before the credentials are
   checked, on every route including the Bearer token endpoint (whose credentials come only
   in the HTTP Basic header, as the contract says, and whose body is capped at 4 KiB); and a
   body must arrive whole within ``body_timeout`` (10 s by default), else 408 with a JSON
   problem body. The same holds for the Starlette adapter.
2. Smuggle ids: a signature id must have the client's id syntax (1 to 128 of
   ``A-Z a-z 0-9 . _ ~ -``, never ``.`` or ``..``) in both the decoded and the raw path, else
   404; so ``%2e%2e``, ``%00``, ``%0d%0a`` (a forged log line) and U+202E (right-to-left
   override) never get published. The client refuses ``.`` and ``..`` too. The PostgreSQL
   relay never sends what PostgreSQL refuses (a NUL or a lone surrogate), which would answer
   503 and make Fourthline retry forever.
3. Exhaust memory through kept strings: a status is at most 64 printable characters (else
   422); an ``errors`` list keeps at most 10 entries, each string cut to a fixed length.
4. Flood the log: a JSON nest too deep (or a body too large) is answered 400 (413) with no
   traceback; refusals are counted in ``receiver.refusals`` (reason -> count) and only the
   first of each reason is logged at WARNING, the rest at DEBUG.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from qes_async import (
    ErrorDetail,
    FakeClock,
    InvalidInputError,
    QESClient,
    Status,
    WebhookDispatcher,
    WebhookEvent,
)
from qes_async._client.validation import check_signature_id
from qes_async.postgres._relay import PostgresRelay, encode_event
from qes_async.webhooks import MAX_UNKNOWN_STATUSES, BasicAuth, BearerAuth, WebhookReceiver

SID = "4f1c2d9e-0000-4000-8000-000000000001"
PREFIX = "/fourthline/qes"
PATH = f"{PREFIX}/{SID}"
USER, PASSWORD = "fourthline", "threat-password-9c2e"
CREDENTIALS = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BASIC = {"Authorization": f"Basic {CREDENTIALS}"}
JSON = {"Content-Type": "application/json"}


def make(
    auth: BasicAuth | BearerAuth | None = None, **kw: Any
) -> tuple[WebhookReceiver, WebhookDispatcher]:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    return WebhookReceiver(dispatcher, auth or BasicAuth(USER, PASSWORD), **kw), dispatcher


def published(dispatcher: WebhookDispatcher) -> list[WebhookEvent]:
    events: list[WebhookEvent] = []
    dispatcher.publish = events.append  # type: ignore[method-assign]
    return events


async def raw_exchange(
    server: TestServer, head: str, first: bytes = b"", trickle: bytes = b"", every: float = 0.05
) -> tuple[bytes, float]:
    """Send ``head`` and ``first``, then ``trickle`` one byte per ``every`` seconds until an
    answer comes; return the answer's status line and how long it took."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + first)
        await writer.drain()
        answer = asyncio.ensure_future(asyncio.wait_for(reader.readline(), 2.0))
        for byte in trickle:
            done, _ = await asyncio.wait({answer}, timeout=every)
            if done:
                break
            writer.write(bytes([byte]))
            await writer.drain()
        line = await answer
        return line, loop.time() - started
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request_head(path: str, length: int, authorization: str | None = None, **extra: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return "\r\n".join(lines) + "\r\n"


# ------------------------------------------------ 1. credentials before body, time limits


async def test_the_token_endpoint_refuses_missing_credentials_before_reading_the_body() -> None:
    receiver, _ = make(BearerAuth(USER, PASSWORD))
    async with TestServer(receiver.aiohttp_app()) as server:
        head = request_head(
            receiver.token_path, 100, Content_Type="application/x-www-form-urlencoded"
        )
        line, took = await raw_exchange(server, head, b"g")  # 99 bytes never come
    assert line.startswith(b"HTTP/1.1 401"), line
    assert took < 1.0
    assert receiver.refusals == {"invalid_client": 1}


def test_the_token_endpoint_is_prechecked_like_every_route() -> None:
    receiver, _ = make(BearerAuth(USER, PASSWORD))
    refusal = receiver.precheck("POST", receiver.token_path, {})
    assert refusal is not None
    assert refusal.status == 401
    assert json.loads(refusal.body) == {"error": "invalid_client"}
    assert refusal.headers["WWW-Authenticate"].startswith("Basic ")
    large = receiver.precheck("POST", receiver.token_path, {**BASIC, "Content-Length": "5000"})
    assert large is not None
    assert large.status == 413
    assert receiver.precheck("POST", receiver.token_path, BASIC) is None


async def test_a_stalled_webhook_body_is_answered_408_within_body_timeout() -> None:
    receiver, dispatcher = make(body_timeout=0.2)
    events = published(dispatcher)
    async with TestServer(receiver.aiohttp_app()) as server:
        head = request_head(PATH, 200, f"Basic {CREDENTIALS}", Content_Type="application/json")
        line, took = await raw_exchange(server, head, b"{", trickle=b" " * 100)
    assert line.startswith(b"HTTP/1.1 408"), line
    assert 0.15 < took < 1.0
    assert receiver.refusals == {"body_timeout": 1}
    assert events == []


async def test_a_stalled_token_request_is_answered_408_within_body_timeout() -> None:
    receiver, _ = make(BearerAuth(USER, PASSWORD), body_timeout=0.2)
    async with TestServer(receiver.aiohttp_app()) as server:
        head = request_head(
            receiver.token_path,
            100,
            f"Basic {CREDENTIALS}",
            Content_Type="application/x-www-form-urlencoded",
        )
        line, took = await raw_exchange(server, head, b"g", trickle=b"r" * 100)
    assert line.startswith(b"HTTP/1.1 408"), line
    assert took < 1.0


async def test_a_body_that_comes_after_the_head_is_waited_for_and_accepted() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    raw = json.dumps({"signatureId": SID, "status": "signed"}).encode()
    async with TestServer(receiver.aiohttp_app()) as server:
        head = request_head(PATH, len(raw), f"Basic {CREDENTIALS}", Content_Type="application/json")
        line, _ = await raw_exchange(server, head, raw[:-3], trickle=raw[-3:])
    assert line.startswith(b"HTTP/1.1 204"), line
    assert [event.status for event in events] == [Status.SIGNED]


async def test_a_chunked_body_over_the_limit_that_arrived_whole_is_413() -> None:
    # No Content-Length to refuse early, and the whole body is in aiohttp's buffer before
    # the handler runs: read without waiting, it must still be bounded.
    receiver, dispatcher = make(max_body=64)
    events = published(dispatcher)
    oversized = json.dumps({"signatureId": SID, "status": "signed", "pad": "x" * 100}).encode()
    chunked = f"{len(oversized):x}\r\n".encode() + oversized + b"\r\n0\r\n\r\n"
    head = "\r\n".join(
        [
            f"POST {PATH} HTTP/1.1",
            "Host: 127.0.0.1",
            "Transfer-Encoding: chunked",
            f"Authorization: Basic {CREDENTIALS}",
            "Content-Type: application/json",
        ]
    )
    async with TestServer(receiver.aiohttp_app()) as server:
        line, _ = await raw_exchange(server, head + "\r\n", chunked)
    assert line.startswith(b"HTTP/1.1 413"), line
    assert receiver.refusals == {"payload_too_large": 1}
    assert events == []


def test_the_408_answer_is_a_json_problem_that_closes_the_connection() -> None:
    receiver, _ = make(body_timeout=0.2)

    async def stalled() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(5)

    answer = asyncio.run(receiver.serve("POST", PATH, {**BASIC, **JSON}, stalled()))
    assert answer.status == 408
    assert json.loads(answer.body)["error"] == "body_timeout"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Connection"] == "close"


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_body_timeout_must_be_a_positive_finite_number(value: float) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make(body_timeout=value)
    assert caught.value.field == "body_timeout"


def load_starlette_example() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "examples" / "starlette_webhooks.py"
    spec = importlib.util.spec_from_file_location("starlette_webhooks_threat", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_starlette_adapter_prechecks_and_bounds_the_body_in_time() -> None:
    receiver, _ = make(body_timeout=0.2)
    app = load_starlette_example().create_app(receiver)
    reads: list[bytes] = []

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):
            reads.append(b" ")
            yield b" "
            await asyncio.sleep(0.05)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        unauthenticated = await http.post(PATH, content=trickle(), headers=JSON)
        assert unauthenticated.status_code == 401
        assert reads == []  # refused before the first body byte was asked for
        started = asyncio.get_running_loop().time()
        stalled = await http.post(PATH, content=trickle(), headers={**BASIC, **JSON})
        took = asyncio.get_running_loop().time() - started
    assert stalled.status_code == 408
    assert stalled.json()["error"] == "body_timeout"
    assert took < 1.0


async def test_the_starlette_adapter_serves_the_token_endpoint_with_bearer_auth() -> None:
    auth = BearerAuth(USER, PASSWORD)
    receiver, _ = make(auth)
    app = load_starlette_example().create_app(receiver)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        refused = await http.post(receiver.token_path, data={"grant_type": "client_credentials"})
        assert refused.status_code == 401
        issued = await http.post(
            receiver.token_path, data={"grant_type": "client_credentials"}, headers=BASIC
        )
        assert issued.status_code == 200
        token = issued.json()["access_token"]
        accepted = await http.post(
            PATH, json={"status": "signed"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert accepted.status_code == 204


# ----------------------------------------------------------------------- 2. id syntax

HOSTILE_IDS = [
    ("..", "%2e%2e"),
    (".", "%2e"),
    ("a\x00b", "a%00b"),
    ("x\r\nINFO forged line", "x%0d%0aINFO%20forged%20line"),
    ("abc\u202etxt.exe", "abc%E2%80%AEtxt.exe"),
    ("a b", "a%20b"),
    ("x" * 129, "x" * 129),
]


@pytest.mark.parametrize(("decoded", "raw"), HOSTILE_IDS)
def test_ids_outside_the_client_syntax_are_404_and_never_published(decoded: str, raw: str) -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    body = json.dumps({"status": "signed"}).encode()
    answer = receiver.handle("POST", f"{PREFIX}/{decoded}", {**BASIC, **JSON}, body)
    assert answer.status == 404
    assert events == []


@pytest.mark.parametrize(("decoded", "raw"), HOSTILE_IDS[:5])
async def test_percent_encoded_ids_are_404_over_http(decoded: str, raw: str) -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    async with TestServer(receiver.aiohttp_app()) as server:
        body = b'{"status": "signed"}'
        head = request_head(
            f"{PREFIX}/{raw}", len(body), f"Basic {CREDENTIALS}", Content_Type="application/json"
        )
        line, _ = await raw_exchange(server, head, body)
    assert line.split()[1] in (b"404", b"400"), line
    assert events == []


def test_a_prefix_with_a_question_mark_matches_no_raw_path_as_before() -> None:
    # The raw path's query starts at its first "?", so under such a prefix no id reads the
    # same in the raw path, even one equal to the decoded path.
    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, BasicAuth(USER, PASSWORD), prefix="/hooks?x")
    path = f"/hooks?x/{SID}"
    raw = json.dumps({"status": "signed"}).encode()
    assert receiver.handle("POST", path, {**BASIC, **JSON}, raw, raw_path=path).status == 404
    assert receiver.handle("POST", path, {**BASIC, **JSON}, raw).status == 204


def test_a_raw_path_that_differs_from_the_decoded_id_is_404() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    body = json.dumps({"status": "signed"}).encode()
    answer = receiver.handle(
        "POST", f"{PREFIX}/ab", {**BASIC, **JSON}, body, raw_path=f"{PREFIX}/a%62"
    )
    assert answer.status == 404
    ok = receiver.handle("POST", PATH, {**BASIC, **JSON}, body, raw_path=PATH)
    assert ok.status == 204
    assert [e.signature_id for e in events] == [SID]


@pytest.mark.parametrize("signature_id", [".", ".."])
async def test_the_client_refuses_dot_segment_ids(signature_id: str) -> None:
    with pytest.raises(InvalidInputError):
        check_signature_id(signature_id)
    async with QESClient("client-id", "client-secret-1", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.get_signature_status(signature_id)
    assert caught.value.field == "signature_id"


class RefusingPool:
    """Stands in for asyncpg: refuses what PostgreSQL refuses (a NUL in text, a NUL or a
    lone surrogate escaped in jsonb), else records the row."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    async def fetchval(self, query: str, signature_id: str, body: str, channel: str) -> int:
        if "\x00" in signature_id or "\x00" in body:
            raise ValueError("invalid byte sequence for encoding UTF8: 0x00")
        lowered = body.lower()
        if "\\u0000" in lowered or any(f"\\u{h}" in lowered for h in ("d8", "d9", "da", "db")):
            raise ValueError("unsupported Unicode escape sequence")
        if any(f"\\u{h}" in lowered for h in ("dc", "dd", "de", "df")):
            raise ValueError("unsupported Unicode escape sequence")
        self.rows.append((signature_id, body))
        return len(self.rows)


class NoListener:
    def add(self, channel: str, callback: object) -> None:
        pass

    def on_connect(self, callback: object) -> None:
        pass


async def test_the_relay_never_sends_what_postgresql_refuses() -> None:
    pool = RefusingPool()
    relay = PostgresRelay(pool, NoListener(), WebhookDispatcher())  # type: ignore[arg-type]
    receiver = WebhookReceiver(relay.recorder, BasicAuth(USER, PASSWORD))
    app = web.Application()
    app.add_routes(relay.aiohttp_routes(receiver))
    hostile = {
        "status": "signed",
        "errors": [{"code": "c\x00", "message": "m\ud800", "field": "f\udfff"}],
    }
    async with TestServer(app) as server, httpx.AsyncClient() as http:
        url = str(server.make_url(PATH))
        content = json.dumps(hostile).encode()  # \u0000 and lone surrogates, escaped
        nul_id = await http.post(
            f"{url[: -len(SID)]}a%00b", content=content, headers={**BASIC, **JSON}
        )
        assert nul_id.status_code == 404
        answer = await http.post(url, content=content, headers={**BASIC, **JSON})
    assert answer.status_code == 204
    ((signature_id, stored),) = pool.rows
    assert signature_id == SID
    assert json.loads(stored)["errors"][0]["code"] == "c\ufffd"


def test_encode_event_replaces_nul_and_lone_surrogates() -> None:
    event = WebhookEvent(
        signature_id=SID,
        status=Status("odd\x00"),
        errors=(ErrorDetail(code="\ud800", message="a\x00b", field="\udfff"),),
    )
    text = encode_event(event)
    assert "\\u0000" not in text
    assert "\\ud8" not in text.lower()
    assert "\\udf" not in text.lower()
    data = json.loads(text)
    assert data["status"] == "odd\ufffd"
    assert data["errors"][0] == {
        "code": "\ufffd",
        "message": "a\ufffdb",
        "field": "\ufffd",
        "statusCode": None,
    }


# ---------------------------------------------------------------- 3. kept string sizes


@pytest.mark.parametrize("status", ["s" * 65, "s" * 65_000, "signed\r\nforged", "\u202esigned"])
def test_a_long_or_unprintable_status_is_422(status: str) -> None:
    receiver, dispatcher = make(max_body=128 * 1024)
    events = published(dispatcher)
    body = json.dumps({"status": status}).encode()
    answer = receiver.handle("POST", PATH, {**BASIC, **JSON}, body)
    assert answer.status == 422
    assert json.loads(answer.body)["error"] == "invalid_status"
    assert events == []


def test_undocumented_statuses_are_kept_as_sent_and_remembered_in_bounds() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    sent = [f"new_status_{n}" for n in range(MAX_UNKNOWN_STATUSES + 20)] + ["signed"]
    for status in sent + sent:
        raw = json.dumps({"status": status}).encode()
        assert receiver.handle("POST", PATH, {**BASIC, **JSON}, raw).status == 204
    assert [e.status.value for e in events] == sent + sent
    assert [e.status.is_known for e in events[: len(sent)]] == [False] * (len(sent) - 1) + [True]
    assert events[-1].status is Status.SIGNED
    # The first ones are remembered (one member per value), the rest built each time.
    assert events[0].status is events[len(sent)].status
    last = len(sent) - 2
    assert events[last].status is not events[len(sent) + last].status
    assert len(receiver._statuses) == len(Status) + MAX_UNKNOWN_STATUSES


def test_a_64_character_status_is_kept() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    body = json.dumps({"status": "s" * 64}).encode()
    assert receiver.handle("POST", PATH, {**BASIC, **JSON}, body).status == 204
    assert events[0].status.value == "s" * 64


def test_error_entries_are_bounded_in_count_and_length() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    entry = {"code": "c" * 5000, "message": "m" * 5000, "field": "f" * 5000, "statusCode": 7}
    body = json.dumps({"status": "error", "errors": [entry] * 50}).encode()
    receiver.max_body = len(body)
    assert receiver.handle("POST", PATH, {**BASIC, **JSON}, body).status == 204
    (event,) = events
    assert len(event.errors) == 10
    for detail in event.errors:
        assert detail.code is not None
        assert detail.message is not None
        assert detail.field is not None
        assert len(detail.code) <= 64
        assert len(detail.field) <= 64
        assert len(detail.message) <= 256
        assert detail.status_code == 7
    assert sum(len(encode_event(e)) for e in events) < 8 * 1024


def test_unprintable_characters_in_error_entries_are_replaced() -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    entry = {"code": "a\x00b", "message": "line\r\nforged", "field": "\u202ex"}
    body = json.dumps({"status": "error", "errors": [entry]}).encode()
    assert receiver.handle("POST", PATH, {**BASIC, **JSON}, body).status == 204
    (detail,) = events[0].errors
    assert (detail.code, detail.message, detail.field) == (
        "a\ufffdb",
        "line\ufffd\ufffdforged",
        "\ufffdx",
    )


# ----------------------------------------------------- 4. deep JSON, counted refusals


def test_a_deep_json_nest_is_400_without_a_traceback_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    caplog.set_level(logging.DEBUG, logger="qes_async")
    answers = [receiver.handle("POST", PATH, {**BASIC, **JSON}, b"[" * 60_000) for _ in range(3)]
    moderate = b'{"status": "signed", "x": ' + b"[" * 40 + b"]" * 40 + b"}"
    answers.append(receiver.handle("POST", PATH, {**BASIC, **JSON}, moderate))
    assert [a.status for a in answers] == [400, 400, 400, 400]
    assert {json.loads(a.body)["error"] for a in answers} == {"json_too_deep"}
    records = [r for r in caplog.records if r.name.startswith("qes_async")]
    assert [r for r in records if r.levelno >= logging.ERROR] == []
    assert [r for r in records if r.exc_info] == []
    assert len([r for r in records if r.levelno == logging.WARNING]) == 1
    assert receiver.refusals == {"json_too_deep": 4}
    assert receiver.refused == 4
    assert events == []


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (b"[" * 31 + b"]" * 31, 204),  # 32 levels with the object: the limit, kept
        (b"[" * 32 + b"]" * 32, 400),  # 33 levels: one too deep
        (b'"' + b"[{" * 40 + b'"', 204),  # many brackets, all inside a string
        (b"[" + b"[]," * 40 + b"[]]", 204),  # many brackets, side by side, 3 levels
    ],
)
def test_the_depth_limit_is_exact_whatever_the_bracket_count(extra: bytes, status: int) -> None:
    receiver, dispatcher = make()
    events = published(dispatcher)
    body = b'{"status": "signed", "x": ' + extra + b"}"
    assert receiver.handle("POST", PATH, {**BASIC, **JSON}, body).status == status
    assert len(events) == (status == 204)


def test_a_deep_json_token_request_is_400_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, _ = make(BearerAuth(USER, PASSWORD))
    caplog.set_level(logging.DEBUG, logger="qes_async")
    headers = {**BASIC, **JSON}
    answer = receiver.handle("POST", receiver.token_path, headers, b"[" * 2000 + b"]" * 2000)
    assert answer.status == 400
    assert json.loads(answer.body) == {"error": "invalid_request"}
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_refusals_are_counted_by_reason_and_warned_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, _ = make()
    caplog.set_level(logging.DEBUG, logger="qes_async")
    for _ in range(5):
        receiver.handle("POST", PATH, JSON, b"{}")
        receiver.handle("POST", PATH, {**BASIC, **JSON}, b"{not json")
        receiver.handle("POST", PATH, {**BASIC, **JSON}, b" " * 70_000)
    assert receiver.refusals == {"unauthorized": 5, "malformed_json": 5, "payload_too_large": 5}
    assert receiver.refused == 15
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert PASSWORD not in caplog.text


def test_an_unexpected_failure_logs_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, dispatcher = make()

    def broken(event: WebhookEvent) -> None:
        raise RuntimeError("a bug")

    dispatcher.publish = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG, logger="qes_async")
    body = json.dumps({"status": "signed"}).encode()
    answers = [receiver.handle("POST", PATH, {**BASIC, **JSON}, body) for _ in range(3)]
    assert [a.status for a in answers] == [400, 400, 400]
    assert receiver.refusals == {"bad_request": 3}
    records = [r for r in caplog.records if r.name.startswith("qes_async")]
    assert len([r for r in records if r.levelno >= logging.ERROR]) == 1
    assert len([r for r in records if r.levelno == logging.WARNING]) == 1


async def test_the_relay_refuses_an_event_id_outside_the_syntax_before_any_sql() -> None:
    pool = RefusingPool()
    relay = PostgresRelay(pool, NoListener(), WebhookDispatcher())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as caught:
        await relay.record(WebhookEvent(signature_id="a\x00b", status=Status.SIGNED))
    assert caught.value.field == "signature_id"
    assert pool.rows == []


def test_a_second_different_failure_still_logs_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver, dispatcher = make()
    failures = iter([RuntimeError("a bug"), RuntimeError("again"), KeyError("another bug")])

    def broken(event: WebhookEvent) -> None:
        raise next(failures)

    dispatcher.publish = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG, logger="qes_async")
    body = json.dumps({"status": "signed"}).encode()
    for _ in range(3):
        receiver.handle("POST", PATH, {**BASIC, **JSON}, body)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.exc_info[1].__class__ for r in errors if r.exc_info] == [RuntimeError, KeyError]
