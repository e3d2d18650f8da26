"""The chaos run: N flows, one sandbox, every fault on, then the checks.

Time: the sandbox, the client, the flows and the waiters share one :class:`FakeClock`
that never moves by itself (``auto_advance=False``); a driver task moves it a few
simulated seconds per couple of milliseconds of wall time, and only while the event loop
keeps up, so a busy loop slows simulated time down instead of letting deadlines pass
under work that is merely queued. Hours of ceremony (a consent after the 2 h window, a
pending verification) then take seconds of wall time. Only the transport's read timeout
and the ``slow`` fault are real time, since that is what they are about.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from qes_async import (
    Document,
    FakeClock,
    HybridWaiter,
    KYCRequiredError,
    MemoryFlowStore,
    OutcomeUnknownError,
    QESClient,
    RateLimitedError,
    RequestNotSentError,
    RetryPolicy,
    ServerError,
    SignatureFlow,
    StaleStateError,
    Timeouts,
    WebhookDispatcher,
    make_pdf,
)
from qes_async._flow_state import parse_state
from qes_async.sandbox import SandboxServer, sandbox_ca

from ._checks import Capture, count_duplicates, find_leaks
from ._scenarios import Scenario, make_signer, pick

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos"]

# Errors after which a worker simply runs the stored flow again (a resume): the call's
# own retries were spent on faults, nothing is wrong with the flow.
TRANSIENT = (
    ServerError,
    RateLimitedError,
    RequestNotSentError,
    OutcomeUnknownError,
    StaleStateError,
)


@attrs.frozen
class ChaosConfig:
    """Knobs of a run (the fault rates are the issue's, fixed)."""

    flows: int = 2000
    seed: int = 1
    concurrency: int = 100
    tick_sim: float = 5.0
    tick_wall: float = 0.002
    # Real seconds. The read timeout sits well above a busy loop's stalls (the test suite
    # runs this beside other tests on 2 cores): a create_workflow timed out by a stall is
    # a lost create answer, which the plan keeps out on purpose (see _turn_faults_on).
    # A slow fault still outlasts it, so slow answers still end as timeouts.
    read_timeout: float = 3.0
    slow_delay: float = 4.0
    revoke_every: int = 500  # requests between two mass token revocations
    max_resumes: int = 20


@attrs.define
class FlowRecord:
    """What happened to one flow."""

    index: int
    scenario: Scenario
    flow_id: str
    reference: str
    mobile: str = attrs.field(repr=False)
    outcome: str | None = None
    resumes: int = 0
    generations: int = 0
    ended: tuple[str | None, ...] = ()
    documents: int = 0
    problems: list[str] = attrs.Factory(list)

    @property
    def missed(self) -> bool:
        return bool(self.problems)


@attrs.define
class ChaosReport:
    """Figures and findings of a run; :attr:`ok` says whether it passed."""

    config: ChaosConfig
    flows: list[FlowRecord]
    wall_seconds: float = 0.0
    sim_seconds: float = 0.0
    requests: int = 0
    faults: Counter[str] = attrs.Factory(Counter)
    retried: int = 0
    revocations: int = 0
    webhooks: Counter[str] = attrs.Factory(Counter)
    lost_and_recovered: int = 0
    documents_checked: int = 0
    duplicates: int = 0
    duplicate_details: list[str] = attrs.Factory(list)
    leaks: int = 0
    leak_kinds: list[str] = attrs.Factory(list)
    secrets_checked: int = 0
    texts_scanned: int = 0

    @property
    def misses(self) -> list[FlowRecord]:
        return [f for f in self.flows if f.missed]

    @property
    def ok(self) -> bool:
        return not self.misses and self.duplicates == 0 and self.leaks == 0

    def table(self) -> str:
        """The summary table printed by ``python -m chaos``."""
        from ._report import render

        return render(self)


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    """Run ``config.flows`` flows under faults and check everything afterwards."""
    capture = Capture()
    root, ours = logging.getLogger(), logging.getLogger("qes_async")
    old = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    loop = asyncio.get_running_loop()
    old_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: capture.add_context(ctx))
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="qes-chaos-") as tmp:
            report = await _run(config, capture, Path(tmp))
    finally:
        loop.set_exception_handler(old_handler)
        root.removeHandler(capture)
        root.setLevel(old[0])
        ours.setLevel(old[1])
    report.wall_seconds = time.perf_counter() - started
    return report


async def _run(config: ChaosConfig, capture: Capture, tmp: Path) -> ChaosReport:
    rng = random.Random(config.seed)
    clock = FakeClock(auto_advance=False)
    start = clock.time()
    records = [
        FlowRecord(
            i,
            pick(i, rng.random),
            f"chaos-{i:05d}",
            f"client-{i:05d}",
            f"+3161{rng.randrange(10**7):07d}",
        )
        for i in range(config.flows)
    ]
    clients = {r.reference: r.scenario.case for r in records}
    given: list[str] = []
    async with SandboxServer(clock=clock, seed=config.seed, clients=clients) as sandbox:
        _turn_faults_on(sandbox, config)
        async with (
            QESClient(
                sandbox.client_id,
                sandbox.client_secret,
                base_url=sandbox.url,
                clock=clock,
                retry=RetryPolicy(attempts=5),
                timeouts=Timeouts(
                    connect=5.0,
                    read=config.read_timeout,
                    total=10.0,
                    transfer_read=config.read_timeout,
                ),
            ) as client,
            _webhooks(sandbox, clock) as (dispatcher, password),
            _background(clock, sandbox, config) as revocations,
        ):
            waiter = HybridWaiter(client, dispatcher, clock=clock)
            store = MemoryFlowStore(clock=clock)
            gate = asyncio.Semaphore(config.concurrency)
            kw: dict[str, Any] = {
                "client": client,
                "store": store,
                "waiter": waiter,
                "clock": clock,
                "tmp": tmp,
                "max_resumes": config.max_resumes,
            }
            await asyncio.gather(*(_one(r, sandbox, gate, capture, given, **kw) for r in records))
            for record in records:
                stored = parse_state((await store.load(record.flow_id)).data)
                record.generations = len(stored.generations)
                record.ended = tuple(g.ended for g in stored.generations)
                _check_outcome(record)
            report = ChaosReport(config, records, revocations=revocations[0])
        report.sim_seconds = clock.time() - start
        _figures(report, sandbox, tmp)
        report.duplicates, report.duplicate_details = count_duplicates(sandbox, records)
        secrets_ = _secrets(sandbox, records, given, password)
        report.secrets_checked = len(secrets_)
        report.texts_scanned = capture.count
        report.leak_kinds = find_leaks(capture, secrets_)
        report.leaks = len(report.leak_kinds)
    return report


def _turn_faults_on(sandbox: SandboxServer, config: ChaosConfig) -> None:
    add = sandbox.inject_fault
    add("server_error", rate=0.10, status=503)
    add("rate_limit", rate=0.05 / 0.90, retry_after=2)
    add("drop_before", rate=0.01 / 0.85)
    # A lost answer to create_workflow cannot be settled: the contract has no idempotency
    # key and no way to list a client's workflows, so a retry makes a second workflow.
    # Every other route also loses answers after processing them, and answers too slowly.
    for route in _ROUTES_AFTER_CREATE:
        add("drop_after", route=route, rate=0.01)
        add("slow", route=route, rate=0.005, delay=config.slow_delay)
        add("revoke_token", route=route, rate=0.002)
    faults = sandbox.webhook_faults
    faults.add("drop", rate=0.30)
    faults.add("duplicate", rate=0.20 / 0.70)
    faults.add("reorder", rate=0.5)
    faults.add("delay", rate=1.0, delay=30.0)


_ROUTES_AFTER_CREATE = (
    "upload_documents",
    "upload_mobile_number",
    "upload_selfie",
    "get_signature_details",
    "approve_documents",
    "confirm_signature",
    "get_signature_status",
    "download_signed_document",
    "get_infocert_contract",
)


@contextlib.asynccontextmanager
async def _webhooks(
    sandbox: SandboxServer, clock: FakeClock
) -> AsyncIterator[tuple[WebhookDispatcher, str]]:
    from aiohttp import web

    from qes_async.webhooks import BasicAuth, WebhookReceiver

    dispatcher = WebhookDispatcher(clock=clock)
    user, password = "fourthline", secrets.token_urlsafe(16)
    receiver = WebhookReceiver(dispatcher, BasicAuth(user, password), clock=clock)
    runner = web.AppRunner(receiver.aiohttp_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sandbox.configure_webhooks(f"http://127.0.0.1:{port}{receiver.prefix}", basic=(user, password))
    try:
        yield dispatcher, password
    finally:
        sandbox.configure_webhooks(None)
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _background(
    clock: FakeClock, sandbox: SandboxServer, config: ChaosConfig
) -> AsyncIterator[list[int]]:
    revocations = [0]
    tasks = [
        asyncio.create_task(_drive_time(clock, config)),
        asyncio.create_task(_revoke(sandbox, config.revoke_every, revocations)),
    ]
    try:
        yield revocations
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _drive_time(clock: FakeClock, config: ChaosConfig) -> None:
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(config.tick_wall)
        now = loop.time()
        # Move only while the loop keeps up (or at least every 50 ms, so nothing starves).
        if now - before < 2 * config.tick_wall or now - last >= 0.05:
            clock.advance(config.tick_sim)
            last = now


async def _revoke(sandbox: SandboxServer, every: int, count: list[int]) -> None:
    """Revoke every token each ``every`` requests: paced by the run's progress, not by the
    wall clock, so a slower machine sees the same revocations per call, not more."""
    next_at = every
    while True:
        await asyncio.sleep(0.01)
        if len(sandbox.request_log) >= next_at:
            sandbox.revoke_tokens()
            count[0] += 1
            next_at += every


async def _one(
    record: FlowRecord,
    sandbox: SandboxServer,
    gate: asyncio.Semaphore,
    capture: Capture,
    given: list[str],
    *,
    client: QESClient,
    store: MemoryFlowStore,
    waiter: HybridWaiter,
    clock: FakeClock,
    tmp: Path,
    max_resumes: int,
) -> None:
    document = Document.from_bytes(
        "contract.pdf", make_pdf(f"Contract {record.index}"), display_name="Contract"
    )
    signer = make_signer(record.scenario, sandbox.latest_passcode, clock, given)
    options: dict[str, Any] = {
        "waiter": waiter,
        "clock": clock,
        "download_dir": tmp / record.flow_id,
        "trust_roots": [sandbox_ca().certificate_der],
        "expected_signer_name": "Jane Doe",
        "lease_ttl": 60.0,
    }
    async with gate:
        flow = SignatureFlow(
            client,
            documents=[document],
            mobile_number=record.mobile,
            client_reference=record.reference,
            signer=signer,
            store=store,
            flow_id=record.flow_id,
            **options,
        )
        while True:
            try:
                result = await flow.run()
            except KYCRequiredError as exc:
                capture.add_exception(exc)
                record.outcome = "kyc_required"
                break
            except TRANSIENT as exc:
                capture.add_exception(exc)
                record.resumes += 1
                if record.resumes > max_resumes:
                    record.problems.append(f"gave up after {record.resumes} resumes: {exc!r}")
                    break
                if isinstance(exc, StaleStateError):
                    await clock.sleep_until(clock.time() + 61, passive=True)
                flow = await SignatureFlow.resume(
                    record.flow_id,
                    client=client,
                    store=store,
                    signer=signer,
                    documents=[document],
                    **options,
                )
                continue
            except Exception as exc:
                capture.add_exception(exc)
                record.outcome = "failed"
                record.problems.append(f"{type(exc).__name__}: {exc}")
                break
            capture.add_text(repr(result))
            record.outcome = result.outcome.value
            record.documents = len(result.documents)
            record.problems += _check_documents(result, record)
            break


def _check_documents(result: Any, record: FlowRecord) -> list[str]:
    problems = []
    if record.outcome == "signed" and not result.documents:
        problems.append("signed but no document downloaded")
    for doc in result.documents:
        path = Path(doc.path)
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != doc.sha256:
            problems.append(f"{path.name}: sha256 differs from the record")
        if doc.validation != "valid":
            problems.append(f"{path.name}: PAdES {doc.validation} ({doc.validation_detail})")
    return problems


def _check_outcome(record: FlowRecord) -> None:
    scenario = record.scenario
    if record.outcome != scenario.expect:
        record.problems.append(f"outcome {record.outcome}, expected {scenario.expect}")
    if scenario.first_ended is not None and (
        not record.ended or record.ended[0] not in scenario.first_ended
    ):
        record.problems.append(f"first generation ended {record.ended[:1]}")


def _figures(report: ChaosReport, sandbox: SandboxServer, tmp: Path) -> None:
    log = sandbox.request_log
    report.requests = len(log)
    report.faults = Counter(r.fault for r in log if r.fault)
    report.retried = sum(1 for r in log if r.fault or r.status == 401)
    deliveries = sandbox.webhook_deliveries
    report.webhooks = Counter(d.fault or "delivered" for d in deliveries)
    lost = {d.signature_id for d in deliveries if d.fault == "drop"}
    owner = {sid: s.client_reference for sid, s in sandbox.service.signatures.items()}
    lost_refs = {owner.get(sid) for sid in lost}
    report.lost_and_recovered = sum(
        1 for f in report.flows if f.reference in lost_refs and not f.missed
    )
    report.documents_checked = sum(f.documents for f in report.flows)
    leftovers = list(tmp.rglob("*.part"))
    if leftovers:
        report.flows[0].problems.append(f"{len(leftovers)} temp file(s) left behind")


def _secrets(
    sandbox: SandboxServer, records: list[FlowRecord], given: list[str], password: str
) -> dict[str, str]:
    found: dict[str, str] = {sandbox.client_secret: "client secret", password: "webhook password"}
    for token in sandbox.service._tokens:
        found[token] = "access token"
    for sms in sandbox.sms_outbox:
        found[sms.passcode] = "passcode"
    for code in given:
        found[code] = "passcode"
    for record in records:
        found[record.mobile] = "mobile number"
    return found
