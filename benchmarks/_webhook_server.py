"""The webhook endpoint under load, in its own process.

``python -m benchmarks._webhook_server receiver`` serves :class:`WebhookReceiver` (Basic auth,
parse, publish to a dispatcher); ``... bare`` serves a bare aiohttp handler that reads the
body and answers 200 on the same route (reading it, as the receiver must, keeps the comparison
like for like). Prints its URL on the first line.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

USER, PASSWORD = "fourthline", "bench-webhook-password"
PREFIX = "/fourthline/qes"


async def bare(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


def make_app(kind: str) -> web.Application:
    if kind == "bare":
        app = web.Application()
        app.router.add_post(PREFIX + "/{signature_id}", bare)
        return app
    from qes_async import WebhookDispatcher
    from qes_async.webhooks import BasicAuth, WebhookReceiver

    receiver = WebhookReceiver(WebhookDispatcher(), BasicAuth(USER, PASSWORD), prefix=PREFIX)
    return receiver.aiohttp_app()


async def main(kind: str) -> None:
    runner = web.AppRunner(make_app(kind), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except KeyboardInterrupt:
        sys.exit(0)
