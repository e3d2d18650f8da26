"""The transport seam: the client's retry, re-auth and error rules over any transport.

The first half runs the whole client in memory over :class:`MockTransport` (what reached
the "service" is the mock's own record of requests, not the client's account); the second
tests the aiohttp adapter alone, with aioresponses standing in for the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aioresponses import aioresponses

from qes_async import (
    InvalidInputError,
    OutcomeUnknownError,
    QESClient,
    RequestNotSentError,
    RetryPolicy,
    ServiceError,
    Transport,
    TransportError,
    TransportRequest,
    TransportResponse,
    make_pdf,
)
from qes_async._client import operations
from qes_async._client.aiohttp_transport import AiohttpTransport
from qes_async._client.operations import Operation, spec
from qes_async._client.transport import FetchingTransport
from qes_async.testing import MockResponse, MockTransport

BASE = "https://qes.test"
SIG = "sig-1"
STATUS_PATH = f"/v1/signatures/{SIG}/status"
CONFIRM_PATH = f"/v1/signatures/{SIG}/confirmation"
STATUS_BODY = {"signatureId": SIG, "status": "pending", "statusCode": None, "errors": []}


async def _no_sleep(seconds: float) -> None:
    return None


def _client(transport: MockTransport, **kw: object) -> QESClient:
    kw.setdefault("retry", RetryPolicy(attempts=4))
    return QESClient("id", "top-secret", base_url=BASE, transport=transport, sleep=_no_sleep, **kw)  # type: ignore[arg-type]


def test_the_mock_and_the_adapter_satisfy_the_protocol() -> None:
    assert isinstance(MockTransport(), Transport)
    assert isinstance(AiohttpTransport(), Transport)
    assert isinstance(MockResponse(204), TransportResponse)


async def test_a_replay_safe_read_is_retried_after_a_5xx() -> None:
    mock = MockTransport().add(
        "GET", STATUS_PATH, MockResponse(503), MockResponse(200, json=STATUS_BODY)
    )
    async with _client(mock) as client:
        report = await client.get_signature_status(SIG)
    assert report.status.value == "pending"
    assert len(mock.calls("GET", STATUS_PATH)) == 2


async def test_an_unsafe_call_whose_answer_was_lost_is_never_sent_twice() -> None:
    lost = TransportError("dropped", sent=True, kind="ServerDisconnectedError")
    mock = MockTransport().add("POST", CONFIRM_PATH, lost, MockResponse(200, json={}))
    async with _client(mock) as client:
        with pytest.raises(OutcomeUnknownError, match="ServerDisconnectedError"):
            await client.confirm_signature(SIG, "123456")
    assert len(mock.calls("POST", CONFIRM_PATH)) == 1


async def test_an_unsafe_call_that_never_left_is_sent_again() -> None:
    refused = TransportError("refused", sent=False)
    attempt = {"attemptId": "a-1", "status": "confirmed"}
    mock = MockTransport().add(
        "POST", CONFIRM_PATH, refused, refused, MockResponse(200, json=attempt)
    )
    async with _client(mock) as client:
        await client.confirm_signature(SIG, "123456")
    assert len(mock.calls("POST", CONFIRM_PATH)) == 3


async def test_nothing_sent_and_retries_spent_is_request_not_sent() -> None:
    mock = MockTransport().add("GET", STATUS_PATH, TransportError("refused", sent=False))
    async with _client(mock, retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(RequestNotSentError):
            await client.get_signature_status(SIG)
    assert len(mock.calls("GET", STATUS_PATH)) == 2


async def test_a_401_fetches_a_new_token_and_sends_again_with_it() -> None:
    mock = MockTransport().add(
        "GET", STATUS_PATH, MockResponse(401), MockResponse(200, json=STATUS_BODY)
    )
    async with _client(mock) as client:
        await client.get_signature_status(SIG)
    tokens = mock.calls("POST", "/v1/oauth2/token")
    reads = mock.calls("GET", STATUS_PATH)
    assert (len(tokens), len(reads)) == (2, 2)
    first, second = (r.headers["authorization"] for r in reads)
    assert first != second
    assert second.startswith("Bearer mock-token-2")


async def test_a_per_operation_retry_rule_is_one_field_of_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Declare confirm replay-safe (as a service with idempotency keys would allow) and the
    same lost answer is now retried: no code changed, only the table's entry."""
    table = dict(operations.OPERATIONS)
    table[Operation.CONFIRM_SIGNATURE] = attrs.evolve(
        spec(Operation.CONFIRM_SIGNATURE), replay_safe=True
    )
    monkeypatch.setattr(operations, "OPERATIONS", table)
    lost = TransportError("dropped", sent=True)
    attempt = {"attemptId": "a-1", "status": "confirmed"}
    mock = MockTransport().add("POST", CONFIRM_PATH, lost, MockResponse(200, json=attempt))
    async with _client(mock) as client:
        await client.confirm_signature(SIG, "123456")
    assert len(mock.calls("POST", CONFIRM_PATH)) == 2


async def test_a_service_refusal_is_its_typed_error_and_not_retried() -> None:
    body = {"code": "bad_request", "message": "no"}
    mock = MockTransport().add("POST", CONFIRM_PATH, MockResponse(400, json=body))
    async with _client(mock) as client:
        with pytest.raises(ServiceError) as info:
            await client.confirm_signature(SIG, "123456")
    assert info.value.status == 400
    assert len(mock.calls("POST", CONFIRM_PATH)) == 1


async def test_a_download_streams_through_the_transport_to_disk(tmp_path: Path) -> None:
    pdf = make_pdf("signed")
    answer = MockResponse(
        200,
        body=pdf,
        headers={"Content-Type": "application/pdf", "Content-Disposition": "filename=a.pdf"},
        chunk_size=7,
    )
    mock = MockTransport().add("GET", f"/v1/signatures/{SIG}/documents/doc-1", answer)
    async with _client(mock) as client:
        document = await client.download_signed_document(SIG, "doc-1", tmp_path)
    on_disk = (tmp_path / "a.pdf").read_bytes()
    assert on_disk == pdf
    assert document.sha256 == hashlib.sha256(on_disk).hexdigest()
    assert answer.closed  # the connection was released


async def test_the_recorded_requests_show_neither_token_nor_body() -> None:
    mock = MockTransport().add("POST", CONFIRM_PATH, MockResponse(400, json={}))
    async with _client(mock) as client:
        with pytest.raises(ServiceError):
            await client.confirm_signature(SIG, "987654")
    shown = repr(mock.requests)
    for secret in ("987654", "mock-token", "top-secret"):
        assert secret not in shown
    assert mock.calls("POST", CONFIRM_PATH)[0].json() == {"passcode": "987654"}
    request = TransportRequest("GET", BASE, {"Authorization": "Bearer s3cret"}, b"s3cret")
    assert "s3cret" not in repr(request)


async def test_a_transport_you_pass_is_yours_to_close() -> None:
    mock = MockTransport()
    async with _client(mock):
        pass
    assert not mock.closed


@pytest.mark.parametrize(
    "extra",
    [{"ssl": ssl.create_default_context()}, {"trace_configs": [aiohttp.TraceConfig()]}],
)
def test_a_transport_replaces_session_tracing_and_tls(extra: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match="transport"):
        QESClient("id", "secret", base_url=BASE, transport=MockTransport(), **extra)  # type: ignore[arg-type]


def test_a_session_that_is_no_aiohttp_session_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"aiohttp\.ClientSession"):
        QESClient("id", "secret", base_url=BASE, session=object())


def test_nothing_scripted_says_which_request() -> None:
    mock = MockTransport(auto_token=False)
    request = TransportRequest("GET", BASE + STATUS_PATH, {}, operation="get_signature_status")
    with pytest.raises(AssertionError, match=STATUS_PATH):
        asyncio.run(mock.send(request))


# ----------------------------------------------------------- one await per ordinary call


def _client_frames() -> list[str]:
    """The client's frames above the caller (innermost first): the coroutines a transport's
    method runs inside, each re-entered whenever the call resumes."""
    frame = sys._getframe(2)
    names = []
    while frame is not None and frame.f_globals.get("__name__", "").startswith("qes_async"):
        names.append(frame.f_code.co_name)
        frame = frame.f_back  # type: ignore[assignment]
    return names


class _Fetching:
    """A transport with ``fetch`` over a :class:`MockTransport`: counts what the client
    used, and records the client's frames it was called from."""

    def __init__(self, inner: MockTransport, *, small: bool = True) -> None:
        self.inner = inner
        self.small = small  # False: every answer comes back open
        self.used: list[str] = []
        self.frames: list[list[str]] = []
        self.requests: list[TransportRequest] = []

    async def send(self, request: TransportRequest) -> TransportResponse:
        self.used.append("send")
        self.frames.append(_client_frames())
        return await self.inner.send(request)

    async def fetch(
        self, request: TransportRequest, limit: int
    ) -> tuple[int, Mapping[str, str], bytes] | TransportResponse:
        self.used.append("fetch")
        self.frames.append(_client_frames())
        self.requests.append(request)
        answer = await self.inner.send(request)
        length = answer.content_length
        if not self.small or length is None or length > limit:
            return answer
        body = await answer.read()
        answer.close()
        return answer.status, answer.headers, body

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_fetching_transport_satisfies_its_protocol() -> None:
    assert isinstance(_Fetching(MockTransport()), FetchingTransport)
    assert isinstance(AiohttpTransport(), FetchingTransport)
    assert not isinstance(MockTransport(), FetchingTransport)  # optional: send alone works


async def test_an_ordinary_call_is_one_fetch_and_a_download_is_a_send(tmp_path: Path) -> None:
    pdf = make_pdf("signed")
    mock = (
        MockTransport()
        .add("GET", STATUS_PATH, MockResponse(200, json=STATUS_BODY))
        .add("POST", CONFIRM_PATH, MockResponse(200, json={"attemptId": "a-1"}))
        .add(
            "GET",
            f"/v1/signatures/{SIG}/documents/doc-1",
            MockResponse(200, body=pdf, headers={"Content-Type": "application/pdf"}),
        )
    )
    transport = _Fetching(mock)
    async with QESClient("id", "s", base_url=BASE, transport=transport) as client:
        await client.get_signature_status(SIG)
        await client.confirm_signature(SIG, "123456")
        await client.download_signed_document(SIG, "doc-1", tmp_path)
    # token, status, confirmation: fetched; the download streams from an open answer.
    assert transport.used == ["fetch", "fetch", "fetch", "send"]


async def test_an_answer_fetch_hands_back_open_is_read_and_closed_by_the_client() -> None:
    answer = MockResponse(200, json=STATUS_BODY)
    mock = MockTransport().add("GET", STATUS_PATH, answer)
    async with QESClient("id", "s", base_url=BASE, transport=_Fetching(mock, small=False)) as c:
        report = await c.get_signature_status(SIG)
    assert report.signature_id == SIG
    assert answer.closed


@pytest.mark.parametrize("fetching", [True, False])
async def test_a_status_read_crosses_one_coroutine_of_the_sender(fetching: bool) -> None:
    """Between the client's method and the transport, one coroutine (the sender's loop):
    each layer would be entered again at every resume of the call."""
    mock = MockTransport().add("GET", STATUS_PATH, MockResponse(200, json=STATUS_BODY))
    transport: Any = _Fetching(mock) if fetching else _Sending(mock)
    async with QESClient("id", "s", base_url=BASE, transport=transport) as client:
        await client.get_signature_status(SIG)
        await client.get_signature_status(SIG)  # the token cached: the ordinary call
    assert transport.frames[-1] == ["call", "get_signature_status"]


async def test_the_frame_record_sees_a_layer_more() -> None:
    """Negative control: a call through one wrapper more shows that wrapper's frame."""
    mock = MockTransport().add("GET", STATUS_PATH, MockResponse(200, json=STATUS_BODY))
    transport = _Fetching(mock)
    async with QESClient("id", "s", base_url=BASE, transport=transport) as client:
        await client.get_signature_status(SIG)
        request = client._status_requests[SIG]
        await client._transport.exchange(request, None)
    assert transport.frames[-1][:2] == ["call", "exchange"]


async def test_a_status_read_again_reuses_its_attempt_until_the_token_changes() -> None:
    mock = MockTransport().add(
        "GET",
        STATUS_PATH,
        MockResponse(200, json=STATUS_BODY),
        MockResponse(200, json=STATUS_BODY),
        MockResponse(401),
        MockResponse(200, json=STATUS_BODY),
    )
    transport = _Fetching(mock)
    async with QESClient("id", "s", base_url=BASE, transport=transport) as client:
        for _ in range(3):
            await client.get_signature_status(SIG)
    reads = [r for r in transport.requests if r.operation == Operation.GET_SIGNATURE_STATUS]
    assert len(reads) == 4
    assert reads[0] is reads[1] is reads[2]  # the same token: the same attempt, not rebuilt
    assert reads[3] is not reads[2]  # the 401 replaced the token
    tokens = [r.headers["Authorization"] for r in reads]
    assert tokens[0].startswith("Bearer mock-token-1")
    assert tokens[3].startswith("Bearer mock-token-2")
    assert reads[3].url == BASE + STATUS_PATH


async def test_a_request_sent_by_two_clients_goes_to_each_ones_service() -> None:
    """The kept attempt belongs to the client that made it (its base URL, its token)."""
    other = "https://other.test"
    first, second = (
        _Fetching(MockTransport().add("GET", STATUS_PATH, MockResponse(200, json=STATUS_BODY)))
        for _ in range(2)
    )
    async with (
        QESClient("id", "s", base_url=BASE, transport=first) as one,
        QESClient("id", "s", base_url=other, transport=second) as two,
    ):
        await one.get_signature_status(SIG)
        # Unauthenticated, so that no token tells the two apart.
        request = attrs.evolve(one._status_requests[SIG], authenticated=False)
        await one._transport.call(request)
        await two._transport.call(request)
    assert first.requests[-1].url == BASE + STATUS_PATH
    assert second.requests[-1].url == other + STATUS_PATH


class _Sending(_Fetching):
    """The same, without ``fetch``: the client sends and reads the open answer itself."""

    fetch = None  # type: ignore[assignment]


# ------------------------------------------------------------------ the aiohttp adapter


class _Answer(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds its answers without the ``stream_writer`` that aiohttp
    3.14 requires; give it one that has sent nothing (what it stands for)."""

    def __init__(self, method: str, url: object, **kw: object) -> None:
        kw.setdefault("stream_writer", type("_Sent", (), {"output_size": 0})())
        super().__init__(method, url, **kw)  # type: ignore[arg-type]


def _request(method: str = "GET", path: str = STATUS_PATH) -> TransportRequest:
    return TransportRequest(method, BASE + path, {"Accept": "application/json"}, operation="op")


async def test_the_adapter_hands_over_status_headers_and_body() -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.get(
            BASE + STATUS_PATH,
            status=202,
            body=b"hello",
            headers={"X-Request-Id": "r-1"},
            response_class=_Answer,
        )
        answer = await transport.send(_request())
        assert answer.status == 202
        assert answer.headers["x-request-id"] == "r-1"  # any case
        assert await answer.read() == b"hello"
        answer.close()
    await transport.aclose()


@pytest.mark.parametrize(
    ("headers", "limit", "small"),
    [
        ({"Content-Length": "5"}, 5, True),
        ({"Content-Length": "5"}, 4, False),  # larger than the bound: open
        ({}, 100, False),  # no declared length: open
        ({"Content-Length": "5", "Content-Encoding": "identity"}, 100, False),  # encoded
    ],
)
async def test_the_adapter_fetches_a_small_answer_whole_and_hands_others_back_open(
    headers: dict[str, str], limit: int, small: bool
) -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.get(
            BASE + STATUS_PATH, status=200, body=b"hello", headers=headers, response_class=_Answer
        )
        got = await transport.fetch(_request(), limit)
        if small:
            assert isinstance(got, tuple)
            status, head, body = got
            assert (status, head["content-length"], body) == (200, "5", b"hello")
        else:
            assert isinstance(got, TransportResponse)
            assert await got.read() == b"hello"
            got.close()
    await transport.aclose()


async def test_the_adapter_fetch_says_whether_anything_may_have_been_sent() -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.post(BASE + CONFIRM_PATH, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(TransportError) as info:
            await transport.fetch(_request("POST", CONFIRM_PATH), 100)
    await transport.aclose()
    assert info.value.sent


async def test_the_adapter_streams_the_body_in_chunks() -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.get(BASE + STATUS_PATH, status=200, body=b"x" * 1000, response_class=_Answer)
        answer = await transport.send(_request())
        chunks = [c async for c in answer.iter_chunks(64)]
        answer.close()
    await transport.aclose()
    assert b"".join(chunks) == b"x" * 1000


@pytest.mark.parametrize(
    ("failure", "sent", "not_http"),
    [
        (
            aiohttp.ClientConnectorError(
                aiohttp.client_reqrep.ConnectionKey("qes.test", 443, True, True, None, None, None),
                OSError(111, "refused"),
            ),
            False,
            False,
        ),
        (aiohttp.ConnectionTimeoutError(), False, False),
        (aiohttp.ServerDisconnectedError(), True, True),
        (aiohttp.ClientPayloadError("cut"), True, False),
        (asyncio.TimeoutError(), True, False),
    ],
)
async def test_the_adapter_says_whether_anything_may_have_been_sent(
    failure: Exception, sent: bool, not_http: bool
) -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.post(BASE + CONFIRM_PATH, exception=failure)
        with pytest.raises(TransportError) as info:
            await transport.send(_request("POST", CONFIRM_PATH))
    await transport.aclose()
    assert (info.value.sent, info.value.not_http) == (sent, not_http)
    assert info.value.kind == type(failure).__name__
    assert info.value.__cause__ is failure


async def test_a_bug_below_the_adapter_is_not_taken_for_a_network_failure() -> None:
    transport = AiohttpTransport()
    with aioresponses() as mocked:
        mocked.get(BASE + STATUS_PATH, exception=KeyError("a bug"))
        with pytest.raises(KeyError):
            await transport.send(_request())
    await transport.aclose()


async def test_the_client_over_the_adapter_retries_a_read_and_not_a_lost_confirm() -> None:
    """The same rules as in memory, now through aiohttp (counted by aioresponses)."""
    with aioresponses() as mocked:
        token = {"access_token": "t", "expires_in": 60}
        mocked.post(BASE + "/v1/oauth2/token", payload=token, response_class=_Answer)
        mocked.get(BASE + STATUS_PATH, status=503, response_class=_Answer)
        mocked.get(BASE + STATUS_PATH, payload=STATUS_BODY, response_class=_Answer)
        mocked.post(BASE + CONFIRM_PATH, exception=aiohttp.ServerDisconnectedError())
        async with QESClient("id", "s", base_url=BASE, sleep=_no_sleep) as client:
            await client.get_signature_status(SIG)
            with pytest.raises(OutcomeUnknownError):
                await client.confirm_signature(SIG, "123456")
        sent = {key: len(calls) for key, calls in mocked.requests.items()}
    counts = {(method, str(url)): n for (method, url), n in sent.items()}
    assert counts[("GET", BASE + STATUS_PATH)] == 2
    assert counts[("POST", BASE + CONFIRM_PATH)] == 1
