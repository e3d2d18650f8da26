"""Shared pieces of the SignatureFlow tests: a sandbox, a client and a scripted signer."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    FakeClock,
    FlowStore,
    PasscodeRequest,
    PollingWaiter,
    QESClient,
    SignatureFlow,
    make_pdf,
)
from qes_async.sandbox import IdentityCase, SandboxServer

MOBILE = "+31612345678"


@dataclass
class World:
    sandbox: SandboxServer
    client: QESClient
    clock: FakeClock
    tmp: Path
    consents: list[ConsentRequest] = field(default_factory=list)
    passcodes: list[PasscodeRequest] = field(default_factory=list)

    def counts(self, signature_id: str) -> Counter[str]:
        """Processed calls per route for one signature."""
        return Counter(
            r.route
            for r in self.sandbox.request_log
            if r.signature_id == signature_id and r.processed and r.route
        )

    def created(self) -> int:
        return sum(
            1 for r in self.sandbox.request_log if r.route == "create_workflow" and r.processed
        )

    def signer(
        self,
        *,
        approve: bool = True,
        consent_delay: float = 0.0,
        passcode_delay: float = 0.0,
        wrong: int = 0,
        selfie: bytes | None = b"\xff\xd8\xff\xe0selfie",
    ) -> CallbackSigner:
        """A signer who approves (after ``consent_delay``) and types ``wrong`` bad codes."""
        sandbox, clock = self.sandbox, self.clock

        async def consent(request: ConsentRequest) -> bool:
            self.consents.append(request)
            if consent_delay and len(self.consents) == 1:
                await clock.sleep(consent_delay)
            return approve

        async def passcode(request: PasscodeRequest) -> str:
            self.passcodes.append(request)
            if passcode_delay and len(self.passcodes) == 1:
                await clock.sleep(passcode_delay)
            right = sandbox.latest_passcode(request.signature_id)
            if len(self.passcodes) <= wrong:
                return "000000" if right != "000000" else "111111"
            return right

        return CallbackSigner(
            consent=consent, passcode=passcode, selfie=(lambda r: selfie) if selfie else None
        )

    def flow(self, reference: str = "client-1", **kw: Any) -> SignatureFlow:
        kw.setdefault("signer", self.signer())
        kw.setdefault("documents", [Document.from_bytes("loan.pdf", make_pdf("Loan"))])
        kw.setdefault("waiter", self.waiter())
        kw.setdefault("download_dir", self.tmp / "signed")
        kw.setdefault("mobile_number", MOBILE)
        return SignatureFlow(
            self.client,
            client_reference=reference,
            clock=self.clock,
            **kw,
        )

    def waiter(self) -> PollingWaiter:
        return PollingWaiter(self.client, clock=self.clock, error_grace=300.0, seed=1)

    def resume_kw(self, store: FlowStore, **kw: Any) -> dict[str, Any]:
        kw.setdefault("signer", self.signer())
        return dict(
            client=self.client,
            store=store,
            clock=self.clock,
            waiter=self.waiter(),
            download_dir=self.tmp / "signed",
            **kw,
        )


@asynccontextmanager
async def world(
    tmp: Path, cases: dict[str, IdentityCase] | None = None, **sandbox_kw: Any
) -> AsyncIterator[World]:
    clock = FakeClock()
    async with (
        SandboxServer(
            clock=clock, seed=7, clients=cases or {"client-1": IdentityCase()}, **sandbox_kw
        ) as sandbox,
        QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client,
    ):
        yield World(sandbox, client, clock, tmp)


Hook = Callable[..., object]
