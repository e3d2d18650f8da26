"""HTTP hygiene of the sandbox, below the contract's operations.

Defends against:

* a 405 without ``Allow`` (RFC 9110 requires it to list the path's methods);
* HEAD on a GET operation refused with 405 instead of answered like GET without a body;
* malformed HTTP (bad request line, bad header, invalid ``Content-Length``, broken chunked
  framing) answered with aiohttp's plain-text 400: no JSON error body and no
  ``X-Request-Id``; and the parser's message, which may quote the request's bytes, echoed
  back;
* chunked garbage arriving after the headers, while the handler reads the body, leaving
  the request unanswered for good (aiohttp's C parser does not fail that body) or
  answered 500 ``internal_error`` (its pure-Python parser).

The malformed requests go through a raw socket, since no HTTP client sends them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sandbox_helpers import Api, api, clock, sandbox

from qes_async.sandbox import SandboxServer
from qes_async.sandbox._api import OPERATIONS

__all__ = ["api", "clock", "sandbox"]
SECRET = "s3cr3t-header-value"


def assert_json_error(status: int, headers: dict[str, str], body: bytes, code: str) -> None:
    assert status // 100 == 4, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    assert headers.get("x-request-id"), headers
    parsed: Any = json.loads(body)
    assert parsed["code"] == code, parsed
    assert isinstance(parsed["message"], str)
    assert parsed["message"]
    assert isinstance(parsed["errors"], list)


async def raw(sandbox: SandboxServer, *chunks: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send the chunks (a short pause between them), read until the server closes."""
    host, port = sandbox.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(0.05)  # the handler is reading the body by then
            writer.write(chunk)
            await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


MALFORMED = {
    "bad request line": [b"GARBAGE\r\n\r\n"],
    "bad method": [b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n"],
    "bad header": [b"GET /v1/x HTTP/1.1\r\nHost: x\r\nBad Header" + SECRET.encode() + b"\r\n\r\n"],
    "invalid content-length": [
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n"
    ],
    "two content-lengths": [
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ],
    "chunked garbage at once": [
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nxyz\r\n0\r\n\r\n"
    ],
    "chunked garbage after the headers": [
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"zz\r\nxyz\r\n0\r\n\r\n",
    ],
    "chunked garbage after a first chunk": [
        b"POST /v1/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
        b"1\r\n}\r\nqq\r\n",
    ],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_http_gets_the_json_error_body(sandbox: SandboxServer, name: str) -> None:
    status, headers, body = await raw(sandbox, *MALFORMED[name])
    assert status == 400, (status, body)
    assert_json_error(status, headers, body, "bad_request")
    assert SECRET.encode() not in body


async def test_a_well_formed_raw_request_still_works(sandbox: SandboxServer) -> None:
    status, headers, _ = await raw(
        sandbox, b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 404
    assert headers.get("x-request-id")


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_405_lists_the_allowed_methods(api: Api, operation: str) -> None:
    method = OPERATIONS[operation]
    path = getattr(api.sandbox.routes, operation).format(id="abc", document_id="doc")
    wrong = "DELETE"
    answer = await api.call(wrong, path)
    assert answer.status == 405, answer
    assert answer.json["code"] == "method_not_allowed"
    assert answer.headers["X-Request-Id"]
    allowed = {m.strip() for m in answer.headers["Allow"].split(",")}
    expected = {method, "HEAD"} if method == "GET" else {method}
    assert allowed == expected


async def test_405_on_a_control_route_lists_its_methods(api: Api) -> None:
    answer = await api.call("POST", "/_sandbox/sms", auth=False)
    assert answer.status == 405, answer
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == {"GET", "HEAD"}


async def test_head_on_every_get_operation_is_get_without_body(api: Api) -> None:
    sid = await api.to_signed()
    details = (await api.details(sid)).json
    document_id = details["documents"][0]["documentId"]
    for operation, method in OPERATIONS.items():
        if method != "GET":
            continue
        path = getattr(api.sandbox.routes, operation).format(id=sid, document_id=document_id)
        get = await api.call("GET", path)
        head = await api.call("HEAD", path)
        assert head.status == get.status, (operation, head, get)
        assert get.status in (200, 204), (operation, get)
        assert head.raw == b"", operation
        # the same headers (a multipart boundary is new on each call, so media type only)
        assert head.headers.get("Content-Length") == get.headers.get("Content-Length")
        media = [a.headers.get("Content-Type", "").split(";")[0] for a in (head, get)]
        assert media[0] == media[1], (operation, media)
        assert head.headers["X-Request-Id"]


async def test_head_of_an_unknown_signature_is_404_without_body(api: Api) -> None:
    answer = await api.call("HEAD", "/v1/signatures/00000000-0000-4000-8000-000000000000/status")
    assert answer.status == 404, answer
    assert answer.raw == b""
    assert answer.headers["X-Request-Id"]
