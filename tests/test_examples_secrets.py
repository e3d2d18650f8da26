"""The web examples' passcode handlers: when the inbox fails while it takes a passcode, no
frame of the example (or of the SDK) shows the passcode or the form around it, as an
error tracker recording the traceback's locals would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import register_secret
from frame_locals import leaks, sdk_frame_locals
from test_examples import load

from qes_async import QESClient, SignerInbox, WebhookDispatcher
from qes_async.webhooks import BasicAuth, WebhookReceiver

PASSCODE = "27493018"


class BrokenInbox(SignerInbox):
    async def submit_passcode(self, flow_id: str, passcode: object) -> Any:
        raise RuntimeError("the inbox failed")


def _app(name: str, client: QESClient, folder: Path) -> Any:
    module = load(name)
    receiver = WebhookReceiver(WebhookDispatcher(), BasicAuth("fourthline", "examples-pw-9"))
    app = module.SigningApp(client, receiver, download_dir=folder)
    app.inbox = BrokenInbox()
    ended = asyncio.get_running_loop().create_future()  # the app cancels it as it stops
    ended.set_result(None)
    app.flows["f-1"] = module.FlowView(flow=None, task=ended)  # only looked up by id
    return app


def _check(exc: BaseException, module: str, handler: str) -> None:
    modules = ("qes_async", module)
    assert handler in {function for function, _, _ in sdk_frame_locals(exc, modules)}
    assert leaks(exc, PASSCODE, modules=modules) == []


async def test_fastapi_passcode_handler_holds_no_passcode(tmp_path: Path) -> None:
    register_secret(PASSCODE)
    async with QESClient("client", "secret-for-examples", base_url="http://127.0.0.1:9") as qes:
        app = _app("fastapi_app", qes, tmp_path)
        transport = httpx.ASGITransport(app=app.make_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            with pytest.raises(RuntimeError) as info:
                await http.post("/flows/f-1/passcode", data={"passcode": PASSCODE})
    _check(info.value, "example_fastapi_app", "passcode_submit")


async def test_aiohttp_passcode_handler_holds_no_passcode(tmp_path: Path) -> None:
    register_secret(PASSCODE)
    caught: list[BaseException] = []

    @web.middleware
    async def keep(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except RuntimeError as exc:
            caught.append(exc)
            raise web.HTTPInternalServerError() from None

    async with QESClient("client", "secret-for-examples", base_url="http://127.0.0.1:9") as qes:
        application = _app("aiohttp_app", qes, tmp_path).make_app()
        application.middlewares.append(keep)
        async with TestClient(TestServer(application)) as http:
            response = await http.post("/flows/f-1/passcode", data={"passcode": PASSCODE})
            assert response.status == 500
    assert len(caught) == 1
    _check(caught[0], "example_aiohttp_app", "passcode_submit")
