"""Property: junk thrown at any route gets a 4xx with the error body, never a 500."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qes_async import FakeClock
from qes_async.sandbox import SandboxServer
from qes_async.sandbox._requests import parse_multipart

ROUTES = [
    ("POST", "/v1/oauth2/token"),
    ("POST", "/v1/workflows"),
    ("POST", "/v1/signatures/{id}/documents"),
    ("PUT", "/v1/signatures/{id}/mobile-number"),
    ("POST", "/v1/signatures/{id}/selfie"),
    ("GET", "/v1/signatures/{id}/details"),
    ("POST", "/v1/signatures/{id}/approval"),
    ("POST", "/v1/signatures/{id}/confirmation"),
    ("GET", "/v1/signatures/{id}/status"),
    ("GET", "/v1/signatures/{id}/documents/{id}"),
    ("GET", "/v1/signatures/{id}/infocert-contract"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "grant_type",
        "client_id",
        "client_secret",
        "workflowName",
        "clientReference",
        "mobileNumber",
        "approvedDocuments",
        "acceptedLegalConditions",
        "passcodeLanguage",
        "passcode",
        "documents",
        "documentId",
        "sha256",
        "id",
        "version",
    ]
)
bodies = (
    st.dictionaries(field_names, json_values, max_size=5).map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)
content_types = st.sampled_from(
    [
        "application/json",
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data",
        "text/plain",
        "application/pdf",
    ]
)
ids = st.sampled_from(["", "x", "00000000-0000-4000-8000-000000000000", "%2e%2e", "a" * 300])
tokens = st.sampled_from(["good", "none", "junk"])


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    body=bodies,
    content_type=content_types,
    sid=ids,
    token=tokens,
)
def test_junk_gets_a_4xx_error_body(
    route: tuple[str, str], body: bytes, content_type: str, sid: str, token: str
) -> None:
    asyncio.run(_throw(route, body, content_type, sid, token))


async def _throw(
    route: tuple[str, str], body: bytes, content_type: str, sid: str, token: str
) -> None:
    method, template = route
    async with SandboxServer(clock=FakeClock(), client_id="id", client_secret="secret") as sandbox:
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": content_type}
            if token != "none":
                headers["Authorization"] = "Bearer " + (
                    "junk" if token == "junk" else await _token(session, sandbox)
                )
                if token == "good" and sid.startswith("0000"):
                    sid = await _signature(session, sandbox, headers["Authorization"])
            url = sandbox.url + template.replace("{id}", sid)
            async with session.request(method, url, data=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
        assert 400 <= status < 500 or status in (200, 201, 204), (status, raw)
        if status >= 400:
            error = json.loads(raw)
            assert isinstance(error["code"], str)
            assert isinstance(error["message"], str)
            assert isinstance(error["errors"], list)
        assert all(r.status < 500 for r in sandbox.request_log)


async def _token(session: aiohttp.ClientSession, sandbox: SandboxServer) -> str:
    body = {"grant_type": "client_credentials", "client_id": "id", "client_secret": "secret"}
    async with session.post(sandbox.url + "/v1/oauth2/token", json=body) as response:
        token: str = (await response.json())["access_token"]
        return token


async def _signature(session: aiohttp.ClientSession, sandbox: SandboxServer, auth: str) -> str:
    body = {"workflowName": "qes", "clientReference": "junk"}
    async with session.post(
        sandbox.url + "/v1/workflows", json=body, headers={"Authorization": auth}
    ) as response:
        sid: str = (await response.json())["workflowId"]
    await asyncio.sleep(0)
    return sid


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=60), body=st.binary(max_size=300))
def test_multipart_parser_only_ever_raises_a_400(header: str, body: bytes) -> None:
    from qes_async.sandbox._model import ApiRefusal

    status = 0
    try:
        parse_multipart(header, body)
    except ApiRefusal as exc:
        status = exc.status
    assert status in (0, 400)


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=120).map(
        lambda junk: (
            b'--B\r\nContent-Disposition: form-data; name="f"\r\n\r\n' + junk + b"\r\n--B--\r\n"
        )
    )
)
def test_multipart_parser_keeps_part_bytes_exactly(body: bytes) -> None:
    from qes_async.sandbox._model import ApiRefusal

    try:
        parts = parse_multipart("multipart/form-data; boundary=B", body)
    except ApiRefusal:
        return
    inner = body[
        len(b'--B\r\nContent-Disposition: form-data; name="f"\r\n\r\n') : -len(b"\r\n--B--\r\n")
    ]
    if b"\r\n--B" not in inner:
        assert [p.data for p in parts] == [inner]
