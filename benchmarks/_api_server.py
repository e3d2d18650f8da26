"""A minimal stand-in API in its own process: no state, no checks, as cheap as aiohttp gets.

``python -m benchmarks._api_server`` prints its URL on the first line, then serves:

* ``POST /v1/oauth2/token``: a token;
* ``GET /v1/signatures/{id}/status``: a fixed status body;
* ``POST /v1/signatures/{id}/documents``: reads and discards the upload;
* ``GET /v1/signatures/{id}/documents/{N}``: a generated PDF of N bytes, streamed.

So that the client's cost is what a benchmark measures, not the server's.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

STATUS = json.dumps(
    {"signatureId": "sig-1", "status": "pending", "statusCode": 3200, "errors": []}
).encode()
TOKEN = json.dumps(
    {"access_token": "bench-token", "token_type": "Bearer", "expires_in": 3600}
).encode()
CHUNK = b"%" + b"x" * (1024 * 1024 - 2) + b"\n"


async def token(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=TOKEN, content_type="application/json")


async def status(request: web.Request) -> web.Response:
    return web.Response(body=STATUS, content_type="application/json")


async def upload(request: web.Request) -> web.Response:
    received = 0
    async for chunk in request.content.iter_any():
        received += len(chunk)
    return web.Response(status=204, headers={"X-Received": str(received)})


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["doc"])  # the document id is its size in bytes
    head, tail = b"%PDF-1.7\n", b"\n%%EOF\n"
    response = web.StreamResponse(
        headers={"Content-Type": "application/pdf", "Content-Length": str(size)}
    )
    await response.prepare(request)
    await response.write(head)
    left = size - len(head) - len(tail)
    while left > 0:
        piece = CHUNK[: min(left, len(CHUNK))]
        await response.write(piece)
        left -= len(piece)
    await response.write(tail)
    await response.write_eof()
    return response


def make_app() -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/v1/oauth2/token", token)
    app.router.add_get("/v1/signatures/{id}/status", status)
    app.router.add_post("/v1/signatures/{id}/documents", upload)
    app.router.add_get("/v1/signatures/{id}/documents/{doc}", download)
    return app


async def main() -> None:
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
