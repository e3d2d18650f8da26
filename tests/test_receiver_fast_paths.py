"""The receiver's cheaper per-event steps answer exactly as the full ones do.

* :func:`qes_async.webhooks._headers` looks up only the headers the receiver reads in
  aiohttp's case-insensitive multidict: the same values as lowering every name.
* :meth:`WebhookReceiver.serve` and :meth:`WebhookReceiver.aiohttp_handler` share one step,
  which takes the body or a way to read it (aiohttp's ``StreamReader``: a body that came
  whole is taken from its buffer, no timer armed).
* :class:`WebhookDispatcher` skips its expiry walk when nothing can expire: the same kept
  events and drops as walking on every event, also when the clock goes back.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from aiohttp.streams import StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

import qes_async.webhooks as webhooks
from qes_async import FakeClock, Status, WebhookDispatcher, WebhookEvent
from qes_async._waiting import dispatcher as dispatcher_module
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver, WebhookResponse

SID = "sig-00001"
PATH = f"/fourthline/qes/{SID}"
USER, PASSWORD = "fourthline", "fast-path-password-7c2d"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BODY = json.dumps({"signatureId": SID, "status": "signed", "statusCode": 3200}).encode()
GOOD = {"Authorization": AUTH, "Content-Type": "application/json"}


def make(**kwargs: Any) -> WebhookReceiver:
    return WebhookReceiver(
        WebhookDispatcher(clock=FakeClock()), BasicAuth(USER, PASSWORD), **kwargs
    )


def reader(data: bytes, *, eof: bool = True) -> StreamReader:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    if data:
        stream.feed_data(data)
    if eof:
        stream.feed_eof()
    return stream


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


# ------------------------------------------------------------------------------- headers

NAMES = st.sampled_from(
    [
        "Authorization",
        "authorization",
        "AUTHORIZATION",
        "Content-Length",
        "content-length",
        "CONTENT-TYPE",
        "Content-Type",
        "Host",
        "X-Other",
        "author\u0131zation",  # a dotless i: not the same name, in either reading
    ]
)
HEADERS = st.lists(st.tuples(NAMES, st.text(max_size=8)), max_size=8)


@given(HEADERS)
def test_the_headers_read_from_a_multidict_are_those_of_lowering_every_name(
    pairs: list[tuple[str, str]],
) -> None:
    lowered = webhooks._lower(CIMultiDict(pairs))
    expected = {name: lowered[name] for name in webhooks._READ_HEADERS if name in lowered}
    for headers in (CIMultiDict(pairs), CIMultiDictProxy(CIMultiDict(pairs))):
        assert webhooks._headers(headers) == expected


def test_the_last_of_repeated_credentials_counts_in_a_multidict_as_in_a_dict() -> None:
    receiver = make()
    pairs = [("Authorization", "Basic bm9wZTpub3Bl"), ("authorization", AUTH)]
    pairs.append(("Content-Type", "application/json"))
    assert receiver.handle("POST", PATH, CIMultiDict(pairs), BODY).status == 204
    pairs.reverse()  # the wrong credentials last: refused, as a dict of them would be
    assert receiver.handle("POST", PATH, CIMultiDict(pairs), BODY).status == 401


def test_other_mappings_still_have_every_name_lowered() -> None:
    assert webhooks._headers({"X-A": "1", "Content-Type": "b"}) == {
        "x-a": "1",
        "content-type": "b",
    }


# -------------------------------------------------------------------- one step, two ways


async def test_a_body_already_buffered_is_served_without_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_timer(delay: float) -> None:
        raise AssertionError("a timer was armed for a body already in memory")

    monkeypatch.setattr(webhooks.asyncio, "timeout", no_timer)
    receiver = make()
    answer = await receiver.serve("POST", PATH, GOOD, reader(BODY))
    assert answer == WebhookResponse(204)
    assert receiver.accepted == 1


async def test_a_body_still_arriving_is_read_under_the_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    armed: list[float] = []
    real = asyncio.timeout

    def timer(delay: float) -> Any:
        armed.append(delay)
        return real(delay)

    monkeypatch.setattr(webhooks.asyncio, "timeout", timer)
    receiver = make(body_timeout=5.0)
    stream = reader(BODY[:10], eof=False)
    served = asyncio.ensure_future(receiver.serve("POST", PATH, GOOD, stream))
    await asyncio.sleep(0)
    stream.feed_data(BODY[10:])
    stream.feed_eof()
    assert (await served).status == 204
    assert armed == [5.0]


async def test_a_stalled_stream_gets_408_and_an_oversized_one_413() -> None:
    receiver = make(body_timeout=0.05, max_body=64)
    stalled = await receiver.serve("POST", PATH, GOOD, reader(b"{", eof=False))
    assert (stalled.status, stalled.reason) == (408, "body_timeout")
    assert stalled.headers["Connection"] == "close"
    buffered = await receiver.serve("POST", PATH, GOOD, reader(b" " * 65))
    streamed = await receiver.serve("POST", PATH, GOOD, reader(b" " * 65, eof=False))
    assert buffered == streamed
    assert (buffered.status, buffered.headers["Connection"]) == (413, "close")
    assert receiver.refusals == {"body_timeout": 1, "payload_too_large": 2}


async def test_a_refused_request_leaves_the_buffered_body_unread() -> None:
    receiver = make()
    stream = reader(BODY)
    answer = await receiver.serve("POST", PATH, {"Authorization": "Basic eDp5"}, stream)
    assert answer.status == 401
    assert stream.read_nowait() == BODY  # never taken out of the buffer


CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", PATH, GOOD, BODY),
    ("post", PATH, GOOD, BODY),
    ("GET", PATH, GOOD, BODY),
    ("POST", "/elsewhere", GOOD, BODY),
    ("POST", "/fourthline/qes/..", GOOD, BODY),
    ("POST", PATH, {"Content-Type": "application/json"}, BODY),
    ("POST", PATH, {**GOOD, "Content-Type": "text/plain"}, BODY),
    ("POST", PATH, {**GOOD, "Content-Length": "999999"}, BODY),
    ("POST", PATH, GOOD, b""),
    ("POST", PATH, GOOD, b"[1]"),
    ("POST", PATH, GOOD, b"\xff"),
    ("POST", PATH, GOOD, b"{" * 40 + b"}" * 40),
    ("POST", PATH, GOOD, json.dumps({"signatureId": "other", "status": "x"}).encode()),
    ("POST", PATH, GOOD, json.dumps({"status": ""}).encode()),
    ("POST", PATH, GOOD, json.dumps({"status": "signed", "statusCode": "x"}).encode()),
    ("POST", PATH, GOOD, b" " * 70_000),
]


@pytest.mark.parametrize(("method", "path", "headers", "data"), CASES)
async def test_every_way_in_answers_alike(
    method: str, path: str, headers: dict[str, str], data: bytes
) -> None:
    answers = []
    for way in ("handle", "chunks", "buffered", "streamed", "multidict"):
        receiver = make()
        if way == "handle":
            answer = receiver.handle(method, path, headers, data[: receiver.max_body + 1])
        elif way == "chunks":
            answer = await receiver.serve(method, path, headers, chunks(data))
        elif way == "multidict":
            multi = CIMultiDictProxy(CIMultiDict(headers))
            answer = await receiver.serve(method, path, multi, reader(data))
        elif way == "buffered":
            answer = await receiver.serve(method, path, headers, reader(data))
        else:
            answer = await _streamed(receiver, method, path, headers, data)
        events = receiver.dispatcher.subscribe(SID).drain()
        answers.append((answer.status, answer.reason, answer.body, events, receiver.refusals))
    first = answers[0]
    for other in answers[1:]:
        assert other == first  # (handle() alone has no unread rest to close for)


async def _streamed(
    receiver: WebhookReceiver, method: str, path: str, headers: dict[str, str], data: bytes
) -> WebhookResponse:
    stream = reader(data[:5], eof=False)
    served = asyncio.ensure_future(receiver.serve(method, path, headers, stream))
    await asyncio.sleep(0)
    if data[5:]:
        stream.feed_data(data[5:])
    stream.feed_eof()
    return await served


async def test_the_token_route_is_served_from_a_buffered_body_too() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, BearerAuth(USER, PASSWORD))
    form = {"Authorization": AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    path = receiver.token_path
    answer = await receiver.serve("POST", path, form, reader(b"grant_type=client_credentials"))
    assert answer.status == 200
    token = json.loads(answer.body)["access_token"]
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert (await receiver.serve("POST", PATH, bearer, reader(BODY))).status == 204
    too_big = await receiver.serve("POST", path, form, reader(b"x" * 5000))
    assert too_big.status == 413


# ---------------------------------------------------------------------------- dispatcher


class StepClock:
    """A clock set by hand; it may go back."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


class WalkingDispatcher(WebhookDispatcher):
    """The dispatcher as it was: every kept event walks the expiry."""

    def _keep(self, event: WebhookEvent) -> None:
        now = self.clock.time()
        pending = self._pending.pop(event.signature_id, None) or dispatcher_module._Pending()
        pending.add(now, event, self._statuses)
        pending.updated = now
        self._pending[event.signature_id] = pending
        while self._pending:
            signature_id, oldest = next(iter(self._pending.items()))
            too_many = len(self._pending) > self.max_pending
            if not too_many and now - oldest.updated <= self.pending_ttl:
                break
            del self._pending[signature_id]
            self.dropped += len(oldest.events)


def _kept(dispatcher: WebhookDispatcher) -> list[object]:
    pending: OrderedDict[str, Any] = dispatcher._pending
    return [
        (sid, p.updated, [(at, e, e.received_at) for at, e in p.kept(sid, dispatcher._statuses)])
        for sid, p in pending.items()
    ]


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 3.0, 11.0, -4.0, -20.0])),
        st.tuples(st.just("subscribe"), st.integers(0, 5)),
        st.tuples(st.just("forget"), st.integers(0, 5)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS, st.sampled_from([0, 1, 3, 10]), st.sampled_from([0.0, 5.0, 10.0]))
def test_skipping_the_expiry_walk_keeps_and_drops_what_walking_does(
    operations: list[tuple[str, Any]], max_pending: int, ttl: float
) -> None:
    clocks = (StepClock(), StepClock())
    fast = WebhookDispatcher(clock=clocks[0], max_pending=max_pending, pending_ttl=ttl)  # type: ignore[arg-type]
    slow = WalkingDispatcher(clock=clocks[1], max_pending=max_pending, pending_ttl=ttl)  # type: ignore[arg-type]
    for kind, value in operations:
        for clock, dispatcher in zip(clocks, (fast, slow), strict=True):
            sid = f"s{value}"
            if kind == "publish":
                dispatcher.publish(WebhookEvent(sid, Status.PENDING, received_at=clock.now))
            elif kind == "advance":
                clock.now += value
            elif kind == "subscribe":
                with dispatcher.subscribe(sid) as subscription:
                    subscription.drain()
            else:
                dispatcher._forget(sid)
        assert _kept(fast) == _kept(slow)
        assert fast.dropped == slow.dropped


def test_the_walk_is_skipped_while_nothing_can_expire_and_done_when_the_clock_goes_back() -> None:
    clock = StepClock()
    dispatcher = WebhookDispatcher(clock=clock, pending_ttl=600.0)  # type: ignore[arg-type]
    walks = 0
    walk = dispatcher._expire

    def counted(now: float) -> None:
        nonlocal walks
        walks += 1
        walk(now)

    dispatcher._expire = counted  # type: ignore[method-assign]
    ids = [f"sig-{n:04d}" for n in range(100)]
    for n in range(1000):  # round robin: the oldest entry is the one updated each time
        clock.now += 0.01
        dispatcher.publish(WebhookEvent(ids[n % 100], Status.PENDING))
    assert walks <= 2
    clock.now += 601.0  # everything is too old now
    dispatcher.publish(WebhookEvent("late", Status.PENDING))
    assert dispatcher.pending_count == 1
    assert dispatcher.dropped == 1000
    clock.now -= 5.0  # the clock goes back: every event walks, as before
    before = walks
    for sid in ids[:10]:
        dispatcher.publish(WebhookEvent(sid, Status.PENDING))
    assert walks - before == 10


async def test_over_aiohttp_an_accepted_webhook_is_a_bare_204_and_a_refusal_closes() -> None:
    import aiohttp
    from aiohttp.test_utils import TestServer

    receiver = make()
    async with TestServer(receiver.aiohttp_app()) as server, aiohttp.ClientSession() as session:
        url = server.make_url(PATH)
        for _ in range(2):
            async with session.post(url, data=BODY, headers=GOOD) as response:
                assert response.status == 204
                assert await response.read() == b""
                assert response.headers.get("Connection", "keep-alive") != "close"
        refused = {**GOOD, "Authorization": "Basic eDp5"}
        async with session.post(url, data=BODY, headers=refused) as response:
            assert response.status == 401
            assert response.headers.get("Connection") == "close"
    assert (receiver.accepted, receiver.refusals) == (2, {"unauthorized": 1})
