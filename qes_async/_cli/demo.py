"""``qes-async demo``: a whole qualified signature against the embedded sandbox, in seconds.

The sandbox and the flow share one :class:`FakeClock`, so the scenarios that wait hours
(``expiry``) finish at once; the progress shows both the simulated time and the wall time.
The simulated signer approves, reads the passcode from the sandbox's SMS outbox, and plays
the scenario's part (a wrong passcode first, a consent that comes too late, a selfie).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs

from .._client.pdf import make_pdf
from .._flow.driver import FlowOutcome, FlowResult, SignatureFlow
from .._flow.events import FlowEvent, FlowEventKind
from .._runtime.clock import Clock, FakeClock
from .._signers.signer import CallbackSigner, ConsentRequest, PasscodeRequest, SelfieRequest

__all__ = ["SCENARIOS", "run_demo"]

# A tiny JPEG (start and end markers around a JFIF header): enough for the sandbox.
SELFIE_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


@attrs.frozen
class Scenario:
    """One demo path: the identity case it uses and what it shows."""

    summary: str
    case: dict[str, Any] = attrs.Factory(dict)
    wrong_passcode_first: bool = False
    late_consent_first: bool = False


SCENARIOS: dict[str, Scenario] = {
    "happy": Scenario("a verified client signs one contract"),
    "selfie": Scenario("the identity case is 2 days old: a selfie first", {"case_age_hours": 48}),
    "wrong-passcode": Scenario(
        "a mistyped passcode, then the right one", wrong_passcode_first=True
    ),
    "expiry": Scenario(
        "consent comes after the 2 h deadline: a new workflow, then signed",
        late_consent_first=True,
    ),
    "pending-verification": Scenario(
        "signed while the identity case is still being verified",
        {
            "flow_kind": "pending_verification",
            "case_status": "pending",
            "verification_seconds": 90.0,
        },
    ),
    "kyc": Scenario(
        "a client with risk score 500 is refused (kyc_required)",
        {"risk_score": 500},
    ),
}


class Progress:
    """Prints one line per flow event: wall time, simulated time, what happened.

    The demo and ``qes-async sign`` share it; with ``simulated=False`` (a real clock) the
    simulated time is left out.
    """

    def __init__(self, clock: Clock, out: Callable[[str], None], *, simulated: bool = True) -> None:
        self.clock = clock
        self.out = out
        self.simulated = simulated
        self.wall0 = time.perf_counter()
        self.sim0 = clock.time()

    def stamp(self) -> str:
        wall = time.perf_counter() - self.wall0
        if not self.simulated:
            return f"[{wall:7.1f}s]"
        sim = int(self.clock.time() - self.sim0)
        return f"[{wall:6.2f}s | T+{sim // 3600:02d}:{sim % 3600 // 60:02d}:{sim % 60:02d}]"

    def say(self, text: str) -> None:
        self.out(f"{self.stamp()} {text}")

    def until(self, deadline: float | None) -> str:
        if deadline is None:
            return ""
        left = int(deadline - self.clock.time())
        return f" (deadline in {left // 3600}h{left % 3600 // 60:02d}m)"

    def __call__(self, event: FlowEvent) -> None:
        kind = event.kind
        if kind is FlowEventKind.STATUS_CHANGED:
            self.say(f"status: {event.status}  (signature {event.signature_id})")
        elif kind is FlowEventKind.WAITING_FOR_SIGNER:
            self.say(f"waiting for the signer: {event.waiting_for}{self.until(event.deadline)}")
        elif kind is FlowEventKind.DEADLINE_APPROACHING:
            self.say(f"deadline approaching for {event.waiting_for}{self.until(event.deadline)}")
        elif kind is FlowEventKind.RESTARTED:
            self.say(f"restarted as generation {event.generation}: {event.reason}")
        elif kind is FlowEventKind.DOCUMENT_DOWNLOADED:
            what = "the InfoCert contract" if event.document_id == "infocert-contract" else ""
            self.say(f"downloaded {what or event.path} ({event.validation})")
        elif kind is FlowEventKind.CREATE_UNCONFIRMED:
            self.say(f"a workflow was asked for and no answer came ({event.reason})")
        elif kind is FlowEventKind.FINISHED:
            self.say(f"finished: {event.outcome}")


def demo_signer(sandbox: Any, scenario: Scenario, progress: Progress) -> CallbackSigner:
    """The simulated human of the demo."""
    state = {"late": scenario.late_consent_first, "wrong": scenario.wrong_passcode_first}
    clock = sandbox.clock

    async def consent(request: ConsentRequest) -> bool:
        for doc in request.documents:
            progress.say(f"signer reads {doc.display_name or doc.file_name}")
        for cond in request.legal_conditions:
            progress.say(f"signer accepts {cond.title or cond.id} (version {cond.version})")
        if state["late"]:
            state["late"] = False
            progress.say("signer goes to lunch and comes back after the consent deadline")
            await clock.sleep(request.deadline - clock.time() + 60)
        return True

    def passcode(request: PasscodeRequest) -> str:
        real = str(sandbox.latest_passcode(request.signature_id))
        if state["wrong"]:
            state["wrong"] = False
            progress.say("signer mistypes the passcode")
            return "".join("1" if c != "1" else "2" for c in real)
        progress.say(f"signer types the passcode sent to {request.masked_mobile_number}")
        return real

    def selfie(request: SelfieRequest) -> bytes:
        progress.say("signer takes a selfie")
        return SELFIE_JPEG

    def on_answer(request: object, answer: Any) -> None:
        if not answer.accepted:
            progress.say(f"service: {answer.message}")

    return CallbackSigner(consent, passcode, selfie=selfie, on_answer=on_answer)


@contextlib.asynccontextmanager
async def _webhook_waiter(sandbox: Any, client: Any, clock: FakeClock) -> AsyncIterator[Any]:
    """A receiver on loopback that the sandbox delivers to, feeding a HybridWaiter."""
    from aiohttp import web

    from .._waiting.dispatcher import WebhookDispatcher
    from .._waiting.waiters import HybridWaiter
    from ..webhooks import BasicAuth, WebhookReceiver

    dispatcher = WebhookDispatcher(clock=clock)
    user, password = "fourthline", secrets.token_urlsafe(16)
    receiver = WebhookReceiver(dispatcher, BasicAuth(user, password), clock=clock)
    runner = web.AppRunner(receiver.aiohttp_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sandbox.configure_webhooks(f"http://127.0.0.1:{port}{receiver.prefix}", basic=(user, password))
    # Webhook waiters sleep passively (their timers never move a fake clock), so the demo
    # lets simulated time flow: one simulated second every two milliseconds.
    driver = asyncio.create_task(_drive_time(clock))
    try:
        yield HybridWaiter(client, dispatcher, clock=clock)
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        sandbox.configure_webhooks(None)
        await runner.cleanup()


async def _drive_time(clock: FakeClock, *, step: float = 1.0, every: float = 0.002) -> None:
    while True:
        await asyncio.sleep(every)
        clock.advance(step)


async def run_demo(
    scenario_name: str,
    *,
    webhooks: bool = False,
    out_dir: Path = Path("signed"),
    out: Callable[[str], None] = print,
) -> tuple[FlowOutcome, FlowResult | None, dict[str, Any]]:
    """Run one scenario; return the outcome, the result (None when refused) and a summary."""
    from .._client.client import QESClient
    from .._core.errors import KYCRequiredError
    from ..sandbox import IdentityCase, SandboxServer, sandbox_ca

    scenario = SCENARIOS[scenario_name]
    clock = FakeClock(start=time.time())
    reference = f"demo-{scenario_name}"
    case = IdentityCase(**scenario.case)
    out(f"qes-async demo: {scenario_name}: {scenario.summary}")
    async with SandboxServer(clock=clock, clients={reference: case}) as sandbox:
        out(f"sandbox serving at {sandbox.url} (simulated clock)")
        progress = Progress(clock, out)
        async with (
            QESClient(
                sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
            ) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            waiter = (
                await stack.enter_async_context(_webhook_waiter(sandbox, client, clock))
                if webhooks
                else None
            )
            out("waiting with: " + ("webhooks plus safety polling" if webhooks else "polling"))
            flow = SignatureFlow(
                client,
                documents=[_contract(reference)],
                mobile_number="+31612345678",
                client_reference=reference,
                signer=demo_signer(sandbox, scenario, progress),
                waiter=waiter,
                clock=clock,
                download_dir=out_dir,
                trust_roots=[sandbox_ca().certificate_der],
                expected_signer_name=f"{case.first_name} {case.last_name}",
                on_event=progress,
            )
            try:
                result = await flow.run()
            except KYCRequiredError as refusal:
                codes = ", ".join(str(c) for c in refusal.status_codes) or "none"
                progress.say(f"refused: kyc_required (status codes {codes}). {refusal.advice}")
                evidence = await _write_evidence(flow, out_dir)
                return (
                    FlowOutcome.KYC_REQUIRED,
                    None,
                    {
                        "flow_id": flow.flow_id,
                        "outcome": "kyc_required",
                        "signature_id": refusal.report.signature_id,
                        "documents": [],
                        "contract": None,
                        "status_codes": list(refusal.status_codes),
                        "requests": len(sandbox.request_log),
                        "evidence": evidence,
                    },
                )
            evidence = await _write_evidence(flow, out_dir)
        summary = {**_summary(result, sandbox), "evidence": evidence}
    return result.outcome, result, summary


#: The evidence record's name, beside the signed files of the flow.
EVIDENCE_FILE = "evidence.json"


async def _write_evidence(flow: SignatureFlow, out_dir: Path) -> str | None:
    """Write the flow's evidence record beside its signed files; return its path."""
    record = flow.evidence
    if record is None:
        return None
    path = out_dir / flow.flow_id / EVIDENCE_FILE

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(record.to_json(), encoding="utf-8")

    await asyncio.to_thread(write)
    return str(path)


def _contract(reference: str) -> Any:
    from .._client.documents import Document

    text = f"Loan contract\nClient reference: {reference}\nAmount: EUR 10,000\nTerm: 60 months"
    return Document.from_bytes("loan-contract.pdf", make_pdf(text), display_name="Loan contract")


def _summary(result: FlowResult, sandbox: Any) -> dict[str, Any]:
    return {**result.as_json(), "requests": len(sandbox.request_log)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options."""
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="happy")
    parser.add_argument("--webhooks", action="store_true", help="wait through webhooks")
    parser.add_argument("--output", "-o", default="signed", help="folder for the signed PDFs")
