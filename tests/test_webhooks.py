"""WebhookReceiver: the framework-neutral core, both auth kinds, and the aiohttp routes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import register_secret

from qes_async import FakeClock, Status, WebhookDispatcher
from qes_async.webhooks import BasicAuth, BearerAuth, WebhookReceiver, WebhookResponse

SID = "4f1c2d9e-0000-4000-8000-000000000001"
PATH = f"/fourthline/qes/{SID}"
USER, PASSWORD = "fourthline", "hook-password-5b1f"
JSON = {"content-type": "application/json"}


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def body(status: str = "signed", signature_id: str = SID, **extra: object) -> bytes:
    return json.dumps({"signatureId": signature_id, "status": status, **extra}).encode()


def make(auth: BasicAuth | BearerAuth | None = None) -> tuple[WebhookReceiver, WebhookDispatcher]:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, auth or BasicAuth(USER, PASSWORD))
    return receiver, dispatcher


def events(dispatcher: WebhookDispatcher, signature_id: str = SID) -> list[Status]:
    with dispatcher.subscribe(signature_id) as subscription:
        return [e.status for e in subscription.drain()]


def test_valid_basic_webhook_is_accepted_and_published() -> None:
    register_secret(PASSWORD)
    receiver, dispatcher = make()
    answer = receiver.handle("POST", PATH, {**basic(), **JSON}, body("signed", statusCode=42))
    assert answer == WebhookResponse(204)
    with dispatcher.subscribe(SID) as subscription:
        (event,) = subscription.drain()
    assert event.status is Status.SIGNED
    assert event.status_code == 42
    assert event.received_at == FakeClock.DEFAULT_START


def test_body_without_signature_id_takes_the_path_id() -> None:
    receiver, dispatcher = make()
    raw = json.dumps({"status": "pending", "errors": [{"code": "x"}, 3]}).encode()
    assert receiver.handle("POST", PATH, {**basic(), **JSON}, raw).status == 204
    assert events(dispatcher) == [Status.PENDING]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong-password"),
        basic(user="someone-else"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer something"},
        {"Authorization": "Basic \u00e9t\u00e9"},  # not ASCII: once a ValueError, a 400
        {"Authorization": "Basic \udce9\udce9"},  # a raw byte as aiohttp decodes it
    ],
)
def test_missing_or_wrong_basic_credentials_get_401_with_a_challenge(
    headers: dict[str, str],
) -> None:
    register_secret(PASSWORD)
    receiver, dispatcher = make()
    answer = receiver.handle("POST", PATH, {**headers, **JSON}, body())
    assert answer.status == 401
    assert (
        answer.headers["WWW-Authenticate"] == 'Basic realm="fourthline-webhooks", charset="UTF-8"'
    )
    assert PASSWORD.encode() not in answer.body
    assert dispatcher.pending_count == 0


CANONICAL = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("auth", [BasicAuth(USER, PASSWORD), BearerAuth(USER, PASSWORD)])
@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {CANONICAL}",
        f"basic {CANONICAL}",  # the scheme in another case
        f"BASIC  {CANONICAL} ",  # more spacing
    ],
)
def test_basic_credentials_in_any_form_the_parse_reads_are_accepted(
    auth: BasicAuth | BearerAuth, authorization: str
) -> None:
    checked = (
        auth.check({"authorization": authorization}).ok
        if isinstance(auth, BasicAuth)
        else auth.check_client({"authorization": authorization}) is None
    )
    assert checked


@pytest.mark.parametrize("kind", [BasicAuth, BearerAuth])
def test_a_renamed_user_is_checked_under_the_new_name_only(
    kind: type[BasicAuth] | type[BearerAuth],
) -> None:
    auth = kind(USER, PASSWORD)
    auth.username = "renamed"

    def ok(headers: dict[str, str]) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        if isinstance(auth, BasicAuth):
            return auth.check(lowered).ok
        return auth.check_client(lowered) is None

    assert ok(basic("renamed", PASSWORD))
    assert not ok(basic(USER, PASSWORD))
    assert auth.username == "renamed"


def test_a_user_name_with_a_colon_never_authenticates_as_before() -> None:
    # HTTP Basic splits at the first colon, so "a:b" + "pw" reads as "a" + "b:pw": the
    # header a client would build for it must not pass on a byte-for-byte comparison.
    auth = BasicAuth("a:b", "pw")
    header = "Basic " + base64.b64encode(b"a:b:pw").decode()
    assert not auth.check({"authorization": header}).ok


def test_a_wrong_password_of_the_same_length_is_refused() -> None:
    wrong = PASSWORD[:-1] + ("x" if PASSWORD[-1] != "x" else "y")
    auth = BasicAuth(USER, PASSWORD)
    assert not auth.check({k.lower(): v for k, v in basic(USER, wrong).items()}).ok
    assert auth.check({k.lower(): v for k, v in basic().items()}).ok


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 400, "malformed_json"),
        (body(signature_id="someone-else"), "application/json", 422, "signature_id_mismatch"),
        (json.dumps({"signatureId": SID}).encode(), "application/json", 422, "invalid_status"),
        (body(statusCode="31x5"), "application/json", 422, "invalid_status_code"),
        (body(statusCode=True), "application/json", 422, "invalid_status_code"),
        (body(), "text/plain", 415, "unsupported_media_type"),
        (body(), "", 415, "unsupported_media_type"),
        (b"{" + b" " * 70_000 + b"}", "application/json", 413, "payload_too_large"),
    ],
)
def test_bad_bodies_get_the_right_4xx(
    raw: bytes, content_type: str, status: int, error: str
) -> None:
    receiver, dispatcher = make()
    headers = {**basic(), "Content-Type": content_type}
    answer = receiver.handle("POST", PATH, headers, raw)
    assert answer.status == status
    assert json.loads(answer.body)["error"] == error
    assert dispatcher.pending_count == 0
    assert receiver.refused == 1


def test_declared_oversized_body_is_refused_before_reading() -> None:
    receiver, _ = make()
    answer = receiver.precheck("POST", PATH, {**basic(), "Content-Length": "999999"})
    assert answer is not None
    assert answer.status == 413


def test_wrong_method_and_unknown_paths() -> None:
    receiver, _ = make()
    answer = receiver.handle("GET", PATH, basic(), b"")
    assert (answer.status, answer.headers["Allow"]) == (405, "POST")
    assert receiver.handle("POST", "/elsewhere/x", basic(), body()).status == 404
    assert receiver.handle("POST", "/fourthline/qes/", basic(), body()).status == 404
    assert receiver.handle("POST", f"{PATH}/extra", basic(), body()).status == 404
    # Without BearerAuth there is no token endpoint.
    assert receiver.handle("POST", "/fourthline/qes/oauth2/token", basic(), b"").status == 404


def token_request(
    receiver: WebhookReceiver, headers: dict[str, str], form: bytes
) -> WebhookResponse:
    hdrs = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    return receiver.handle("POST", receiver.token_path, hdrs, form)


def test_bearer_token_endpoint_issues_random_tokens_that_authenticate_webhooks() -> None:
    register_secret(PASSWORD)
    clock = FakeClock()
    auth = BearerAuth(USER, PASSWORD, token_lifetime=3600)
    dispatcher = WebhookDispatcher(clock=clock)
    receiver = WebhookReceiver(dispatcher, auth)
    assert receiver.token_path == "/fourthline/qes/oauth2/token"
    answer = token_request(receiver, basic(), b"grant_type=client_credentials")
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    issued = json.loads(answer.body)
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 3600
    token = issued["access_token"]
    register_secret(token)
    assert len(token) >= 32
    again = json.loads(token_request(receiver, basic(), b"grant_type=client_credentials").body)
    assert again["access_token"] != token
    bearer = {"Authorization": f"Bearer {token}", **JSON}
    assert receiver.handle("POST", PATH, bearer, body()).status == 204
    assert events(dispatcher) == [Status.SIGNED]


def test_bearer_tokens_expire() -> None:
    clock = FakeClock()
    receiver = WebhookReceiver(
        WebhookDispatcher(clock=clock), BearerAuth(USER, PASSWORD, token_lifetime=60)
    )
    token = json.loads(token_request(receiver, basic(), b"grant_type=client_credentials").body)[
        "access_token"
    ]
    bearer = {"Authorization": f"Bearer {token}", **JSON}
    clock.advance(59)
    assert receiver.handle("POST", PATH, bearer, body()).status == 204
    clock.advance(1)
    answer = receiver.handle("POST", PATH, bearer, body())
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="fourthline-webhooks", error="invalid_token"'
    )


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="fourthline-webhooks"'),
        (basic(), 'Bearer realm="fourthline-webhooks"'),
        (
            {"Authorization": "Bearer made-up"},
            'Bearer realm="fourthline-webhooks", error="invalid_token"',
        ),
    ],
)
def test_webhooks_without_a_live_token_are_refused(headers: dict[str, str], challenge: str) -> None:
    receiver, dispatcher = make(BearerAuth(USER, PASSWORD))
    answer = receiver.handle("POST", PATH, {**headers, **JSON}, body())
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == challenge
    assert dispatcher.pending_count == 0


@pytest.mark.parametrize(
    ("headers", "form", "status", "error"),
    [
        ({}, b"grant_type=client_credentials", 401, "invalid_client"),
        (basic(password="nope-nope"), b"grant_type=client_credentials", 401, "invalid_client"),
        (basic(), b"grant_type=password", 400, "unsupported_grant_type"),
        (basic(), b"", 400, "invalid_request"),
        (
            {"Authorization": "Basic \u00e9t\u00e9"},
            b"grant_type=client_credentials",
            401,
            "invalid_client",
        ),
    ],
)
def test_token_endpoint_refusals(
    headers: dict[str, str], form: bytes, status: int, error: str
) -> None:
    auth = BearerAuth(USER, PASSWORD)
    receiver, _ = make(auth)
    answer = token_request(receiver, headers, form)
    assert answer.status == status
    assert json.loads(answer.body) == {"error": error}
    assert auth.live_tokens == 0
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("auth", [BasicAuth(USER, PASSWORD), BearerAuth(USER, PASSWORD)])
async def test_a_non_ascii_authorization_is_401_before_the_body_not_an_exception(
    auth: BasicAuth | BearerAuth,
) -> None:
    receiver, _ = make(auth)
    path = receiver.token_path if isinstance(auth, BearerAuth) else PATH

    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    headers = {"Authorization": "Basic \u00e9t\u00e9", **JSON}
    answer = await receiver.serve("POST", path, headers, never())
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")


def test_reprs_hide_the_password() -> None:
    basic_auth = BasicAuth(USER, PASSWORD)
    bearer_auth = BearerAuth(USER, PASSWORD)
    receiver, _ = make(bearer_auth)
    for text in (repr(basic_auth), repr(bearer_auth), repr(receiver)):
        assert PASSWORD not in text
        assert "***" in text


async def test_aiohttp_routes_serve_the_core_over_loopback() -> None:
    register_secret(PASSWORD)
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    receiver = WebhookReceiver(dispatcher, BearerAuth(USER, PASSWORD), max_body=1024)
    async with TestServer(receiver.aiohttp_app()) as server, aiohttp.ClientSession() as session:
        async with session.post(
            server.make_url(receiver.token_path),
            data={"grant_type": "client_credentials"},
            headers=basic(),
        ) as response:
            assert response.status == 200
            token = (await response.json())["access_token"]
        register_secret(token)
        hdrs = {"Authorization": f"Bearer {token}"}
        async with session.post(
            server.make_url(PATH), json={"signatureId": SID, "status": "signed"}, headers=hdrs
        ) as response:
            assert response.status == 204
        async with session.post(
            server.make_url(PATH), data=b"x" * 5000, headers={**hdrs, **JSON}
        ) as response:
            assert response.status == 413
        async with session.post(server.make_url(PATH), json={"status": "signed"}) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        async with session.get(server.make_url(PATH), headers=hdrs) as response:
            assert response.status == 405
    assert events(dispatcher) == [Status.SIGNED]


async def test_an_aiohttp_webhook_is_authenticated_once() -> None:
    register_secret(PASSWORD)

    class CountingAuth(BasicAuth):
        checks = 0

        def check(self, headers: Mapping[str, str]) -> Any:
            CountingAuth.checks += 1
            return super().check(headers)

    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, CountingAuth(USER, PASSWORD))
    async with TestServer(receiver.aiohttp_app()) as server, aiohttp.ClientSession() as session:
        url, event = server.make_url(PATH), {"signatureId": SID, "status": "signed"}
        response = await session.post(url, json=event, headers=basic())
        assert response.status == 204
        response.release()
    assert CountingAuth.checks == 1
    assert (receiver.accepted, receiver.refused) == (1, 0)
