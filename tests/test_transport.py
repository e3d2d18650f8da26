"""Transport behaviour: retries, Retry-After, no replay, tokens, timeouts, logging."""

from __future__ import annotations

import asyncio
import logging
import socket
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeAPI, register_secret

from qes_async import (
    AuthenticationError,
    FakeClock,
    OutcomeUnknownError,
    QESClient,
    RateLimitedError,
    RequestNotSentError,
    RetryPolicy,
    ServerError,
    Status,
    Timeouts,
    TooManyAttemptsError,
)
from qes_async._client.sending import MAX_REAUTHS
from qes_async._runtime.clock import to_datetime

SIG = "sig-1"
STATUS = {"signatureId": SIG, "status": "pending", "statusCode": 0, "errors": []}
STATUS_PATH = "/v1/signatures/{id}/status"


def scripted(*answers: web.Response | None) -> object:
    """A handler answering copies of ``answers`` in order, repeating the last one.

    None means: drop the connection without answering.
    """
    queue = list(answers)

    async def handler(request: web.Request) -> web.StreamResponse:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer is None:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response(status=500)
        body = answer.body
        assert body is None or isinstance(body, bytes)
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return web.Response(status=answer.status, body=body, headers=headers)

    return handler


def ok_status() -> web.Response:
    return web.json_response(STATUS)


# ------------------------------------------------------------------------------- retries


async def test_safe_call_retries_5xx_with_exact_backoff_then_raises(fake_api: FakeAPI) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(web.Response(status=503)))
    async with fake_api.client() as client:
        with pytest.raises(ServerError) as info:
            await client.get_signature_status(SIG)
    assert info.value.status == 503
    assert len(fake_api.calls) == 4
    assert fake_api.sleeps == [0.5, 1.0, 2.0]


async def test_safe_call_succeeds_after_a_5xx(fake_api: FakeAPI) -> None:
    fake_api.add(
        "PUT",
        "/v1/signatures/{id}/mobile-number",
        scripted(web.Response(status=502), web.Response(status=204)),
    )
    async with fake_api.client() as client:
        await client.upload_mobile_number(SIG, "+31612345678")
    assert len(fake_api.calls) == 2
    assert fake_api.sleeps == [0.5]


async def test_backoff_is_capped(fake_api: FakeAPI) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(web.Response(status=500)))
    policy = RetryPolicy(attempts=6, base=1.0, cap=3.0, jitter=None, max_time=1000)
    async with fake_api.client(retry=policy) as client:
        with pytest.raises(ServerError):
            await client.get_signature_status(SIG)
    assert fake_api.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0]


async def test_full_jitter_is_applied_to_each_wait(fake_api: FakeAPI) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(web.Response(status=500)))
    policy = RetryPolicy(attempts=3, jitter=lambda wait: wait / 10)
    async with fake_api.client(retry=policy) as client:
        with pytest.raises(ServerError):
            await client.get_signature_status(SIG)
    assert fake_api.sleeps == [0.05, 0.1]


async def test_max_time_stops_retrying(fake_api: FakeAPI) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(web.Response(status=500)))
    clock = FakeClock()
    policy = RetryPolicy(attempts=10, base=1.0, cap=100, jitter=None, max_time=4.0)
    async with fake_api.client(retry=policy, clock=clock, sleep=clock.sleep) as client:
        with pytest.raises(ServerError):
            await client.get_signature_status(SIG)
    # waits 1 + 2 fit in 4 s; the next (4) would end past max_time
    assert len(fake_api.calls) == 3


@pytest.mark.parametrize(
    ("operation", "method", "path"),
    [
        ("create_workflow", "POST", "/v1/workflows"),
        ("approve_documents", "POST", "/v1/signatures/{id}/approval"),
        ("confirm_signature", "POST", "/v1/signatures/{id}/confirmation"),
        ("upload_documents", "POST", "/v1/signatures/{id}/documents"),
    ],
)
async def test_unsafe_call_is_never_replayed_after_5xx(
    fake_api: FakeAPI, operation: str, method: str, path: str
) -> None:
    from test_client_endpoints import DETAILS

    from qes_async import Document, SignatureDetails, make_pdf
    from qes_async._core.converter import structure

    fake_api.add(method, path, scripted(web.Response(status=500)))
    args: dict[str, tuple[object, ...]] = {
        "create_workflow": ("ref-1",),
        "approve_documents": (SIG, structure(DETAILS, SignatureDetails)),
        "confirm_signature": (SIG, "123456"),
        "upload_documents": (SIG, [Document.from_bytes("a.pdf", make_pdf())]),
    }
    async with fake_api.client() as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await getattr(client, operation)(*args[operation])
    assert len(fake_api.calls) == 1
    assert fake_api.sleeps == []
    assert isinstance(info.value.__cause__, ServerError)
    assert info.value.operation == operation
    assert "get_signature_status" in str(info.value)


async def test_unsafe_call_is_never_replayed_after_a_read_timeout(fake_api: FakeAPI) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"attemptId": "late"})

    fake_api.add("POST", "/v1/signatures/{id}/confirmation", slow)
    timeouts = Timeouts(read=0.05, total=0.5)
    async with fake_api.client(timeouts=timeouts) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.confirm_signature(SIG, "123456")
    assert len(fake_api.calls) == 1
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)


async def test_unsafe_call_is_never_replayed_after_a_dropped_connection(
    fake_api: FakeAPI,
) -> None:
    fake_api.add("POST", "/v1/workflows", scripted(None))
    async with fake_api.client() as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.create_workflow("ref-1")
    assert len(fake_api.calls) == 1
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_safe_call_retries_a_read_timeout(fake_api: FakeAPI) -> None:
    answers = iter([True, False])

    async def sometimes_slow(request: web.Request) -> web.Response:
        if next(answers):
            await asyncio.sleep(1)
        return ok_status()

    fake_api.add("GET", STATUS_PATH, sometimes_slow)
    async with fake_api.client(timeouts=Timeouts(read=0.05)) as client:
        report = await client.get_signature_status(SIG)
    assert report.status is Status.PENDING
    assert len(fake_api.calls) == 2


async def test_safe_call_retries_a_dropped_connection(fake_api: FakeAPI) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(None, ok_status()))
    async with fake_api.client() as client:
        assert (await client.get_signature_status(SIG)).status is Status.PENDING
    assert len(fake_api.calls) == 2


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_connection_refused_is_retried_for_unsafe_calls_then_not_sent() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = QESClient(
        "id",
        "secret-xyz",
        base_url=closed_port_url(),
        retry=RetryPolicy(jitter=None),
        sleep=sleep,
    )
    async with client:
        with pytest.raises(RequestNotSentError) as info:
            await client.create_workflow("ref")
    # the token request is the one that could not connect: retried, then "not sent"
    assert sleeps == [0.5, 1.0, 2.0]
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    assert "safe to try again" in str(info.value)


async def test_an_unsafe_call_cut_short_waiting_for_a_pooled_connection_was_not_sent(
    fake_api: FakeAPI,
) -> None:
    """The call's total time bound ran out while it still waited for one of the pool's
    connections: nothing of it left this machine, so it is "not sent" (retried, even for
    an unsafe call), never "outcome unknown"."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    fake_api.add("GET", "/slow", slow)
    fake_api.add("GET", STATUS_PATH, lambda r: ok_status())
    fake_api.add("POST", "/v1/workflows", lambda r: web.json_response({"workflowId": SIG}))
    # one connection at most, none kept idle: the one the holder takes is the only one
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=True))
    try:
        async with fake_api.client(session=session, timeouts=Timeouts(total=0.2)) as client:
            await client.get_signature_status(SIG)  # takes a token
            holder = asyncio.ensure_future(session.get(fake_api.server.make_url("/slow")))
            while ("GET", "/slow") not in fake_api.calls:  # it holds the one connection
                await asyncio.sleep(0.01)
            with pytest.raises(RequestNotSentError) as info:
                await client.create_workflow("ref")
            release.set()
            (await holder).release()
        assert ("POST", "/v1/workflows") not in fake_api.calls
        assert len(fake_api.sleeps) == 3  # retried as a call that was not sent
        assert "safe to try again" in str(info.value)
    finally:
        await session.close()


async def test_an_unsafe_call_cut_short_once_sent_stays_outcome_unknown(fake_api: FakeAPI) -> None:
    """The same time bound running out while the service works on the call (it was sent):
    the outcome is unknown and the call is never sent again."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # longer than the total timeout below
        return web.json_response({"workflowId": SIG})

    fake_api.add("POST", "/v1/workflows", slow)
    async with fake_api.client(timeouts=Timeouts(total=0.2)) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_workflow("ref")
    assert fake_api.calls.count(("POST", "/v1/workflows")) == 1
    assert fake_api.sleeps == []


# ---------------------------------------------------------------------------- rate limits


async def test_retry_after_is_honoured_even_for_unsafe_calls(fake_api: FakeAPI) -> None:
    fake_api.add(
        "POST",
        "/v1/signatures/{id}/confirmation",
        scripted(
            web.json_response({"code": "rate_limited"}, status=429, headers={"Retry-After": "7"}),
            web.json_response({"attemptId": "a-1"}),
        ),
    )
    async with fake_api.client() as client:
        attempt = await client.confirm_signature(SIG, "123456")
    assert attempt.attempt_id == "a-1"
    assert fake_api.sleeps == [7.0]


async def test_retry_after_as_http_date(fake_api: FakeAPI) -> None:
    clock = FakeClock()
    when = format_datetime(to_datetime(clock.time() + 30), usegmt=True)
    fake_api.add(
        "GET",
        STATUS_PATH,
        scripted(web.Response(status=429, headers={"Retry-After": when}), ok_status()),
    )
    async with fake_api.client(clock=clock) as client:
        await client.get_signature_status(SIG)
    assert fake_api.sleeps == [30.0]


async def test_retry_after_over_the_cap_raises_at_once(fake_api: FakeAPI) -> None:
    fake_api.add(
        "GET", STATUS_PATH, scripted(web.Response(status=429, headers={"Retry-After": "120"}))
    )
    async with fake_api.client() as client:
        with pytest.raises(RateLimitedError) as info:
            await client.get_signature_status(SIG)
    assert info.value.retry_after == 120.0
    assert fake_api.sleeps == []
    assert len(fake_api.calls) == 1


async def test_retry_after_until_attempts_are_spent(fake_api: FakeAPI) -> None:
    fake_api.add(
        "GET", STATUS_PATH, scripted(web.Response(status=429, headers={"Retry-After": "2"}))
    )
    async with fake_api.client(retry=RetryPolicy(attempts=3, jitter=None)) as client:
        with pytest.raises(RateLimitedError) as info:
            await client.get_signature_status(SIG)
    assert info.value.retry_after == 2.0
    assert fake_api.sleeps == [2.0, 2.0]
    assert len(fake_api.calls) == 3


async def test_429_without_retry_after_means_attempts_spent(fake_api: FakeAPI) -> None:
    fake_api.add(
        "POST",
        "/v1/signatures/{id}/confirmation",
        scripted(web.json_response({"code": "too_many_attempts"}, status=429)),
    )
    async with fake_api.client() as client:
        with pytest.raises(TooManyAttemptsError) as info:
            await client.confirm_signature(SIG, "123456")
    assert info.value.code == "too_many_attempts"
    assert len(fake_api.calls) == 1
    assert fake_api.sleeps == []


# --------------------------------------------------------------------------------- tokens


async def test_token_single_flight_for_100_concurrent_calls(fake_api: FakeAPI) -> None:
    async def slow_token(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        fake_api.tokens_issued += 1
        return web.json_response({"access_token": "tok-ACCESS-0001", "expires_in": 3600})

    fake_api.token_handler = slow_token
    fake_api.add("GET", STATUS_PATH, lambda r: ok_status())
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with fake_api.client(session=session) as client:
            reports = await asyncio.gather(*(client.get_signature_status(SIG) for _ in range(100)))
        assert not session.closed  # a caller's session is never closed by us
    assert len(reports) == 100
    assert fake_api.tokens_issued == 1
    assert len(fake_api.calls) == 100


async def test_token_is_cached_and_refreshed_ahead_of_expiry(fake_api: FakeAPI) -> None:
    clock = FakeClock()
    seen: list[str] = []

    def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return ok_status()

    fake_api.add("GET", STATUS_PATH, handler)
    async with fake_api.client(clock=clock) as client:
        await client.get_signature_status(SIG)
        clock.advance(3000)
        await client.get_signature_status(SIG)
        clock.advance(590)  # 10 s before expiry: refreshed ahead of it
        await client.get_signature_status(SIG)
    assert seen == ["Bearer tok-ACCESS-0001", "Bearer tok-ACCESS-0001", "Bearer tok-ACCESS-0002"]


async def test_missing_expires_in_defaults_to_an_hour(fake_api: FakeAPI) -> None:
    clock = FakeClock()
    fake_api.expires_in = None
    fake_api.add("GET", STATUS_PATH, lambda r: ok_status())
    async with fake_api.client(clock=clock) as client:
        await client.get_signature_status(SIG)
        clock.advance(3500)
        await client.get_signature_status(SIG)
        assert fake_api.tokens_issued == 1
        clock.advance(100)
        await client.get_signature_status(SIG)
    assert fake_api.tokens_issued == 2


async def test_401_refreshes_the_token_once_and_retries_once(fake_api: FakeAPI) -> None:
    seen: list[str] = []

    def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return web.json_response({"code": "invalid_token"}, status=401)
        return web.json_response({"attemptId": "a-1"})

    fake_api.add("POST", "/v1/signatures/{id}/approval", handler)
    from test_client_endpoints import DETAILS

    from qes_async import SignatureDetails
    from qes_async._core.converter import structure

    async with fake_api.client() as client:
        attempt = await client.approve_documents(SIG, structure(DETAILS, SignatureDetails))
    assert attempt.attempt_id == "a-1"
    assert seen == ["Bearer tok-ACCESS-0001", "Bearer tok-ACCESS-0002"]
    assert fake_api.sleeps == []


async def test_api_refusing_every_fresh_token_raises_after_bounded_refreshes(
    fake_api: FakeAPI,
) -> None:
    fake_api.add("GET", STATUS_PATH, scripted(web.json_response({"code": "nope"}, status=401)))
    async with fake_api.client() as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_signature_status(SIG)
    # one attempt per token: the first, then MAX_REAUTHS refreshes, each a different token
    assert len(fake_api.calls) == 1 + MAX_REAUTHS
    assert fake_api.tokens_issued == 1 + MAX_REAUTHS
    assert fake_api.sleeps == []
    assert "client_secret" in str(info.value)  # the advice names what to check


async def test_a_token_refused_twice_raises_at_once(fake_api: FakeAPI) -> None:
    """The token endpoint handing out a token the API already refused: no loop."""
    fake_api.token_handler = lambda request: web.json_response(
        {"access_token": "tok-always-the-same", "token_type": "Bearer", "expires_in": 3600}
    )
    fake_api.add("GET", STATUS_PATH, scripted(web.json_response({"code": "nope"}, status=401)))
    async with fake_api.client() as client:
        with pytest.raises(AuthenticationError):
            await client.get_signature_status(SIG)
    assert len(fake_api.calls) == 2


async def test_token_revoked_again_during_a_call_is_refreshed_again(fake_api: FakeAPI) -> None:
    """A shared token revoked twice while one call retries must not fail that call."""
    seen: list[str] = []

    def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) <= 2:  # token 1 revoked; token 2 revoked too before it was used
            return web.json_response({"code": "invalid_token"}, status=401)
        return web.json_response({"signatureId": SIG, "status": "pending"})

    fake_api.add("GET", STATUS_PATH, handler)
    async with fake_api.client() as client:
        report = await client.get_signature_status(SIG)
    assert report.status.value == "pending"
    assert seen == [f"Bearer tok-ACCESS-000{n}" for n in (1, 2, 3)]


async def test_bad_credentials_raise_authentication_error_without_the_secret(
    fake_api: FakeAPI,
) -> None:
    fake_api.add("GET", STATUS_PATH, lambda r: ok_status())
    secret = "wrong-secret-value-123"
    register_secret(secret)
    url = str(fake_api.server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    async with QESClient("id", secret, base_url=url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_signature_status(SIG)
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    assert fake_api.calls == []


# ------------------------------------------------------------------------ logs and hooks


async def test_one_debug_line_per_attempt(
    fake_api: FakeAPI, captured_logs: list[logging.LogRecord]
) -> None:
    fake_api.add(
        "GET",
        STATUS_PATH,
        scripted(web.Response(status=503, headers={"X-Request-Id": "req-9"}), ok_status()),
    )
    async with fake_api.client() as client:
        await client.get_signature_status(SIG)
    lines = [r.getMessage() for r in captured_logs if r.name == "qes_async"]
    assert len(lines) == 3
    assert lines[0].startswith("POST create_token status=200 ")
    assert lines[1].startswith("GET get_signature_status status=503 elapsed=")
    assert lines[1].endswith("attempt=1 request_id=req-9")
    assert lines[2].endswith("attempt=2 request_id=-")
    assert all(SIG not in line for line in lines)


async def test_a_failed_attempt_is_logged_with_its_number(
    fake_api: FakeAPI, captured_logs: list[logging.LogRecord]
) -> None:
    calls: list[int] = []

    async def slow_then_ok(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(1.0)  # longer than the total timeout below
        return ok_status()

    fake_api.add("GET", STATUS_PATH, slow_then_ok)
    async with fake_api.client(timeouts=Timeouts(total=0.2)) as client:
        await client.get_signature_status(SIG)
    lines = [r.getMessage() for r in captured_logs if "get_signature_status" in r.getMessage()]
    assert len(lines) == 2
    assert " error=" in lines[0]
    assert lines[0].endswith("attempt=1 request_id=-")
    assert lines[1].startswith("GET get_signature_status status=200 ")
    assert lines[1].endswith("attempt=2 request_id=-")


def test_env_var_turns_debug_logging_on() -> None:
    from qes_async._runtime.logs import configure_from_env, logger

    logger.setLevel(logging.WARNING)
    before = list(logger.handlers)
    try:
        assert configure_from_env({"QES_ASYNC_LOG": "debug"}) is True
        assert logger.level == logging.DEBUG
        assert len(logger.handlers) == len(before) + (0 if before else 1)
        assert configure_from_env({}) is False
        assert configure_from_env({"QES_ASYNC_LOG": "loud"}) is False
    finally:
        for handler in logger.handlers:
            if handler not in before:
                logger.removeHandler(handler)


async def test_trace_configs_are_passed_through(fake_api: FakeAPI) -> None:
    started: list[str] = []

    async def on_start(
        session: object, ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started.append(params.method)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    fake_api.add("GET", STATUS_PATH, lambda r: ok_status())
    async with fake_api.client(trace_configs=[trace]) as client:
        await client.get_signature_status(SIG)
    assert started == ["POST", "GET"]


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_larger_than_the_api_ever_sends_is_a_decode_error(
    fake_api: FakeAPI, chunked: bool
) -> None:
    from qes_async import DecodeError
    from qes_async._client.sending import MAX_ANSWER_BYTES

    blob = b'{"signatureId": "' + b"x" * (MAX_ANSWER_BYTES + 10) + b'"}'

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if not chunked:
            response.content_length = len(blob)
        await response.prepare(request)
        try:
            for start in range(0, len(blob), 1 << 20):
                await response.write(blob[start : start + (1 << 20)])
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading, as it should
        return response

    fake_api.add("GET", STATUS_PATH, huge)
    async with fake_api.client() as client:
        with pytest.raises(DecodeError, match="larger than 16 MiB"):
            await asyncio.wait_for(client.get_signature_status(SIG), 30)


async def test_a_401_on_a_token_already_replaced_does_not_count_against_the_call(
    fake_api: FakeAPI,
) -> None:
    """A revocation of the shared token reaches every call in flight; only the first call to
    see it refreshes, and the others' 401s on the old token must not use up their budget."""
    seen: list[str] = []
    first_attempts = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"].endswith("0001"):
            if seen.count(request.headers["Authorization"]) >= 8:
                first_attempts.set()
            await first_attempts.wait()  # all eight calls hold token 1 when it is revoked
            return web.json_response({"code": "invalid_token"}, status=401)
        return web.json_response({"signatureId": SIG, "status": "pending"})

    fake_api.add("GET", STATUS_PATH, handler)
    async with fake_api.client() as client:
        reports = await asyncio.gather(*(client.get_signature_status(SIG) for _ in range(8)))
    assert {r.status.value for r in reports} == {"pending"}
    assert fake_api.tokens_issued == 2  # one refresh served all eight calls
