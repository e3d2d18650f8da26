"""Receive Fourthline's QES webhooks in a Starlette (or FastAPI) app.

The receiver's framework-neutral core takes method, path, headers and body and returns a
status, headers and body; wiring it into any ASGI framework is one small route function.
Run with ``uvicorn examples.starlette_webhooks:app`` after setting the credentials below.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qes_async import WebhookDispatcher
from qes_async.webhooks import BasicAuth, WebhookReceiver


def create_app(receiver: WebhookReceiver) -> Starlette:
    """A Starlette app that serves ``receiver`` on ``POST {prefix}/{signature_id}``."""

    async def webhook(request: Request) -> Response:
        answer = receiver.precheck(request.method, request.url.path, request.headers)
        if answer is None:  # credentials fine: read at most max_body + 1 bytes
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > receiver.max_body:
                    break
            answer = receiver.handle(request.method, request.url.path, request.headers, body)
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    routes = [Route(f"{receiver.prefix}/{{signature_id}}", webhook, methods=["POST"])]
    return Starlette(routes=routes)


def default_app() -> Starlette:
    """The app ``uvicorn`` serves: credentials from the environment."""
    dispatcher = WebhookDispatcher()  # give the same one to your HybridWaiter
    auth = BasicAuth(
        os.environ.get("QES_WEBHOOK_USER", "fourthline"),
        os.environ.get("QES_WEBHOOK_PASSWORD", "change-me"),
    )
    return create_app(WebhookReceiver(dispatcher, auth))


app = default_app()
