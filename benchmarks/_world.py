"""An in-process world for flow benchmarks: sandbox, client, webhook receiver, fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    FakeClock,
    HybridWaiter,
    PasscodeRequest,
    PollingWaiter,
    QESClient,
    SignatureFlow,
    WebhookDispatcher,
    make_pdf,
)
from qes_async.sandbox import SandboxServer
from qes_async.webhooks import BasicAuth, WebhookReceiver

MOBILE = "+31612345678"
NUDGE = 10.0  # fake seconds the clock moves on when nothing reaches the sandbox
HOOK_USER, HOOK_PASSWORD = "fourthline", "bench-hook-password"
PDF = make_pdf("Loan agreement")


@dataclass
class World:
    sandbox: SandboxServer
    client: QESClient
    clock: FakeClock
    dispatcher: WebhookDispatcher | None
    folder: Path
    waiter: Any = None
    _signer: CallbackSigner | None = None

    def signer(self, consent_delay: float = 0.0, passcode_delay: float = 0.0) -> CallbackSigner:
        """A signer who consents after ``consent_delay`` and types the passcode after
        ``passcode_delay`` seconds of the fake clock."""
        clock, sandbox = self.clock, self.sandbox

        async def consent(request: ConsentRequest) -> bool:
            if consent_delay:
                await clock.sleep(consent_delay)
            return True

        async def passcode(request: PasscodeRequest) -> str:
            if passcode_delay:
                await clock.sleep(passcode_delay)
            return sandbox.latest_passcode(request.signature_id)

        return CallbackSigner(consent=consent, passcode=passcode)

    def default_signer(self) -> CallbackSigner:
        """One signer (consents and types the passcode at once) for every flow, as an
        application has one."""
        if self._signer is None:
            self._signer = self.signer()
        return self._signer

    def flow(
        self, reference: str, signer: CallbackSigner | None = None, **kw: Any
    ) -> SignatureFlow:
        # One waiter serves every flow, as one client does.
        if self.waiter is None and self.dispatcher is not None:
            self.waiter = HybridWaiter(self.client, self.dispatcher, safety_interval=3600.0)
        elif self.waiter is None:
            self.waiter = PollingWaiter(self.client, clock=self.clock, seed=1)
        waiter = self.waiter
        return SignatureFlow(
            self.client,
            documents=[Document.from_bytes("loan.pdf", PDF)],
            mobile_number=MOBILE,
            client_reference=reference,
            signer=signer or self.default_signer(),
            waiter=waiter,
            clock=self.clock,
            download_dir=self.folder,
            **kw,
        )


@asynccontextmanager
async def world(folder: Path, *, webhooks: bool, **sandbox_kw: Any) -> AsyncIterator[World]:
    """A sandbox on a fake clock and a client; with ``webhooks``, a receiver the sandbox
    delivers to, whose dispatcher feeds hybrid waiters."""
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock, max_pending=100_000) if webhooks else None
    runner = None
    try:
        async with SandboxServer(clock=clock, seed=7, **sandbox_kw) as sandbox:
            if dispatcher is not None:
                receiver = WebhookReceiver(dispatcher, BasicAuth(HOOK_USER, HOOK_PASSWORD))
                runner = web.AppRunner(receiver.aiohttp_app(), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
                await site.start()
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                sandbox.configure_webhooks(
                    f"http://127.0.0.1:{port}{receiver.prefix}", basic=(HOOK_USER, HOOK_PASSWORD)
                )
            async with QESClient(
                sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
            ) as client:
                yield World(sandbox, client, clock, dispatcher, folder)
    finally:
        if runner is not None:
            await runner.cleanup()


@dataclass
class Nudges:
    """How often :func:`nudged` moved the fake clock on, and how many webhook deliveries
    the sandbox recorded as failed (no answer in time, or no 2xx) since it began."""

    world: World = field(repr=False)
    first: int  # deliveries recorded before
    times: int = 0

    @property
    def failed_deliveries(self) -> int:
        return sum(
            not (d.http_status is not None and 200 <= d.http_status < 300)
            for d in self.world.sandbox.webhook_deliveries[self.first :]
        )


@asynccontextmanager
async def nudged(w: World, every: float = 1.0) -> AsyncIterator[Nudges]:
    """Move the fake clock on by ``NUDGE`` seconds whenever no request has reached the
    sandbox for ``every`` second of real time: what the real clock would do for a flow
    whose webhook was lost under the load (the sandbox retries a failed delivery after a
    backoff on its clock, and the flow's waiter reads the status again on the same clock).
    Without it, a run on a fake clock that loses one webhook waits for ever."""
    got = Nudges(w, len(w.sandbox.webhook_deliveries))

    async def nudge() -> None:
        seen = -1
        while True:
            await asyncio.sleep(every)
            now = len(w.sandbox.request_log)
            if now == seen:
                w.clock.advance(NUDGE)
                got.times += 1
            seen = now

    task = asyncio.ensure_future(nudge())
    try:
        yield got
    finally:
        task.cancel()
