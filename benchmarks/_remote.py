"""The ceremony benchmark with the sandbox in another process (``_sandbox_child``): the SDK's
flows, and the plain-aiohttp driver's, each with the event loop to itself, as in production.

Both sides make the same requests (the signer reads its passcode from the sandbox's SMS
outbox over the control endpoint, on both sides) and wait on webhooks the sandbox sends to
a receiver on this loop: the SDK's ``WebhookReceiver`` (Basic auth) feeding one
``HybridWaiter``; a bare handler for the plain driver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from qes_async import (
    CallbackSigner,
    Document,
    FlowOutcome,
    HybridWaiter,
    QESClient,
    SignatureFlow,
    WebhookDispatcher,
)
from qes_async.webhooks import BasicAuth, WebhookReceiver

from ._raw_ceremony import run_flows
from ._world import HOOK_PASSWORD, HOOK_USER, MOBILE, PDF


class RemoteSandbox:
    """The few sandbox calls a benchmark makes, over the control endpoints."""

    def __init__(self, info: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.url, self.client_id = info["url"], info["client_id"]
        self.client_secret = info["client_secret"]
        self._session = session

    async def configure_webhooks(
        self, url: str | None, basic: tuple[str, str] | None = None
    ) -> None:
        body: dict[str, Any] = {"url": url}
        if basic is not None:
            body["basic"] = {"username": basic[0], "password": basic[1]}
        async with self._session.put(f"{self.url}/_sandbox/webhooks", json=body) as resp:
            resp.raise_for_status()

    async def latest_passcode(self, signature_id: str) -> str:
        async with self._session.get(f"{self.url}/_sandbox/sms/{signature_id}/latest") as resp:
            resp.raise_for_status()
            return str((await resp.json())["passcode"])


@asynccontextmanager
async def _receiver(dispatcher: WebhookDispatcher) -> AsyncIterator[str]:
    receiver = WebhookReceiver(dispatcher, BasicAuth(HOOK_USER, HOOK_PASSWORD))
    runner = web.AppRunner(receiver.aiohttp_app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}{receiver.prefix}"
    finally:
        await runner.cleanup()


async def sdk_flows(remote: RemoteSandbox, folder: Path, flows: int) -> tuple[float, float]:
    """(flows/s, event-loop CPU seconds per flow) of ``flows`` concurrent SDK ceremonies."""
    dispatcher = WebhookDispatcher(max_pending=100_000)
    async with _receiver(dispatcher) as hook_url:
        await remote.configure_webhooks(hook_url, basic=(HOOK_USER, HOOK_PASSWORD))
        async with QESClient(remote.client_id, remote.client_secret, base_url=remote.url) as client:
            waiter = HybridWaiter(client, dispatcher, safety_interval=3600.0)

            async def consent(request: Any) -> bool:
                return True

            async def passcode(request: Any) -> str:
                return await remote.latest_passcode(request.signature_id)

            signer = CallbackSigner(consent=consent, passcode=passcode)

            def flow() -> SignatureFlow:
                return SignatureFlow(
                    client,
                    documents=[Document.from_bytes("loan.pdf", PDF)],
                    mobile_number=MOBILE,
                    client_reference="client",
                    signer=signer,
                    waiter=waiter,
                    download_dir=folder,
                )

            assert (await flow().run()).outcome is FlowOutcome.SIGNED  # warm up
            cpu, wall = time.thread_time(), time.perf_counter()
            results = await asyncio.gather(*(flow().run() for _ in range(flows)))
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            assert all(r.outcome is FlowOutcome.SIGNED for r in results)
    return flows / wall, cpu / flows


async def plain_flows(remote: RemoteSandbox, folder: Path, flows: int) -> tuple[float, float]:
    """(flows/s, event-loop CPU seconds per flow) of the plain-aiohttp driver."""
    assert await run_flows(remote, folder / "warm-up", 1) == 1
    cpu, wall = time.thread_time(), time.perf_counter()
    assert await run_flows(remote, folder / "flows", flows) == flows
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return flows / wall, cpu / flows


async def measure(
    info: dict[str, str], folder: Path, flows: int, rounds: int
) -> dict[str, list[float]]:
    """Interleaved rounds of both sides; every round's flows/s and loop CPU per flow."""
    out: dict[str, list[float]] = {"sdk": [], "plain": [], "sdk_cpu": [], "plain_cpu": []}
    async with aiohttp.ClientSession() as session:
        remote = RemoteSandbox(info, session)
        for n in range(rounds):
            for side, run in (("sdk", sdk_flows), ("plain", plain_flows)):
                where = folder / f"{side}-{n}"
                await asyncio.to_thread(where.mkdir, parents=True)
                per_s, cpu = await run(remote, where, flows)
                out[side].append(per_s)
                out[f"{side}_cpu"].append(cpu)
    return out
