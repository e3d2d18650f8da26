"""The same ceremony driven by plain aiohttp: the baseline for what the SDK adds on top of
the HTTP a signing flow must do.

Every flow makes the requests the SDK's flow makes, in the same order, with the same
bodies: create the workflow, upload the PDF (multipart), upload the mobile number, read
the details, approve, confirm with the SMS passcode, download the signed PDF to a file,
fetch the InfoCert contract. It waits the way the SDK's hybrid waiter does: a webhook,
received by a bare aiohttp handler, wakes the flow, which re-reads the status once.

What it leaves out is what the SDK is for: no token refresh or retries, no typed models,
no checks of hashes or PDFs, no checkpoints, no webhook authentication, no fsync. It does
write each file off the event loop, as any asyncio program should. So the ratio of the
SDK's request rate to this one is the price of all the rest.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ._world import MOBILE, PDF

_METADATA = json.dumps({"documents": [{"fileName": "loan.pdf", "displayName": "loan.pdf"}]})


class _Statuses:
    """Per-signature events set by the bare webhook handler."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.waiting: dict[str, asyncio.Event] = {}

    async def handler(self, request: web.Request) -> web.Response:
        body = await request.json()
        sid = body["signatureId"]
        self.seen[sid].add(body["status"])
        event = self.waiting.get(sid)
        if event is not None:
            event.set()
        return web.Response(status=204)

    async def wait(self, sid: str, wanted: str, read: Any) -> None:
        """Wait for a webhook, then re-read the status, until it is ``wanted``."""
        event = self.waiting.setdefault(sid, asyncio.Event())
        while True:
            if self.seen[sid]:
                self.seen[sid].clear()
                if await read() == wanted:
                    return
                continue
            event.clear()
            await event.wait()


async def _maybe(value: Any) -> Any:
    """``value``, awaited if it is awaitable: the sandbox in this process answers at once,
    one in another process (``_remote.RemoteSandbox``) over its control endpoints."""
    return await value if inspect.isawaitable(value) else value


async def run_flows(sandbox: Any, folder: Path, flows: int) -> int:
    """Drive ``flows`` concurrent ceremonies; return how many were signed."""
    statuses = _Statuses()
    app = web.Application()
    app.router.add_post("/hooks/{sid}", statuses.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await _maybe(sandbox.configure_webhooks(f"http://127.0.0.1:{port}/hooks"))
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    base = sandbox.url
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{base}/v1/oauth2/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": sandbox.client_id,
                    "client_secret": sandbox.client_secret,
                },
            ) as resp:
                token = (await resp.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}

            async def one(n: int) -> bool:
                async with session.post(
                    f"{base}/v1/workflows",
                    json={"workflowName": "qes", "clientReference": "client"},
                    headers=auth,
                ) as resp:
                    sid = (await resp.json())["workflowId"]
                sig = f"{base}/v1/signatures/{sid}"

                async def read() -> str:
                    async with session.get(f"{sig}/status", headers=auth) as r:
                        return str((await r.json())["status"])

                await statuses.wait(sid, "pending", read)
                form = aiohttp.FormData()
                form.add_field("metadata", _METADATA, content_type="application/json")
                form.add_field("file", PDF, filename="loan.pdf", content_type="application/pdf")
                async with session.post(f"{sig}/documents", data=form, headers=auth) as r:
                    r.raise_for_status()
                async with session.put(
                    f"{sig}/mobile-number", json={"mobileNumber": MOBILE}, headers=auth
                ) as r:
                    r.raise_for_status()
                await statuses.wait(sid, "user_consent_required", read)
                async with session.get(f"{sig}/details", headers=auth) as r:
                    details = await r.json()
                approval = {
                    "approvedDocuments": [
                        {"documentId": d["documentId"], "sha256": d["sha256"]}
                        for d in details["documents"]
                    ],
                    "acceptedLegalConditions": [
                        {"id": c["id"], "version": c["version"]} for c in details["legalConditions"]
                    ],
                }
                async with session.post(f"{sig}/approval", json=approval, headers=auth) as r:
                    r.raise_for_status()
                await statuses.wait(sid, "confirmation_required", read)
                passcode = await _maybe(sandbox.latest_passcode(sid))
                async with session.post(
                    f"{sig}/confirmation", json={"passcode": passcode}, headers=auth
                ) as r:
                    r.raise_for_status()
                await statuses.wait(sid, "signed", read)
                for doc in details["documents"]:
                    async with session.get(
                        f"{sig}/documents/{doc['documentId']}", headers=auth
                    ) as r:
                        reader = aiohttp.MultipartReader.from_response(r)
                        while (part := await reader.next()) is not None:
                            data = await part.read()  # type: ignore[union-attr]
                            if data.startswith(b"%PDF-"):
                                path = folder / f"{n}-{doc['documentId']}.pdf"
                                await asyncio.to_thread(path.write_bytes, data)
                async with session.get(f"{sig}/infocert-contract", headers=auth) as r:
                    if r.status == 200:
                        contract = await r.read()
                        path = folder / f"{n}-contract.pdf"
                        await asyncio.to_thread(path.write_bytes, contract)
                statuses.waiting.pop(sid, None)
                statuses.seen.pop(sid, None)
                return True

            results = await asyncio.gather(*(one(n) for n in range(flows)))
            return sum(results)
    finally:
        await _maybe(sandbox.configure_webhooks(None))
        await runner.cleanup()
