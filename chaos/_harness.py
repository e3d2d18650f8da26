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
    FlowNotFoundError,
    HybridWaiter,
    KYCRequiredError,
    OutcomeUnknownError,
    QESClient,
    RateLimitedError,
    RequestNotSentError,
    RetryPolicy,
    ServerError,
    SignatureFlow,
    SQLiteFlowStore,
    StaleStateError,
    Timeouts,
    WebhookDispatcher,
    make_pdf,
)
from qes_async._flow.state import parse_state
from qes_async.sandbox import SandboxServer, sandbox_ca

from ._checks import UNSAFE, Capture, DuplicateCount, count_duplicates, find_leaks
from ._plant import plant_duplicates
from ._scenarios import NAME_SETS, Scenario, make_signer, pick

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
    read_timeout: float = 5.0
    slow_delay: float = 6.0
    revoke_every: int = 500  # requests between two mass token revocations
    max_resumes: int = 20
    cancel_rate: float = 0.05  # flows cancelled once at a random moment, then resumed
    cancel_within: float = 1.5  # real seconds: the cancel comes within this of the start
    plant: int = 0  # duplicate unsafe calls sent through a side door (negative control)


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
    names: tuple[str, ...] = ("contract.pdf",)
    cancelled: bool = False
    unconfirmed_creates: int = 0
    unreadable: int = 0  # documents whose validation was expected `unreadable`
    downloads: list[dict[str, Any]] = attrs.Factory(list)
    contract: bool = False
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
    count: DuplicateCount = attrs.Factory(DuplicateCount)
    planted: list[str] = attrs.Factory(list)
    leaks: int = 0
    leak_kinds: list[str] = attrs.Factory(list)
    secrets_checked: int = 0
    texts_scanned: int = 0

    @property
    def misses(self) -> list[FlowRecord]:
        return [f for f in self.flows if f.missed]

    @property
    def ok(self) -> bool:
        """No miss, no leak, and exactly the planted duplicates (none in a normal run)."""
        return (
            not self.misses
            and self.duplicates == len(self.planted) == self.config.plant
            and self.leaks == 0
        )

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
            names=NAME_SETS[i % len(NAME_SETS)] if i < len(NAME_SETS) else rng.choice(NAME_SETS),
            cancelled=rng.random() < config.cancel_rate,
        )
        for i in range(config.flows)
    ]
    cancel_at = {r.flow_id: rng.uniform(0.0, config.cancel_within) for r in records}
    clients = {r.reference: r.scenario.case for r in records}
    given: list[tuple[str, str]] = []  # (signature id, passcode) the signers typed
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
            store = SQLiteFlowStore(tmp / "flows.db", clock=clock)
            gate = asyncio.Semaphore(config.concurrency)
            kw: dict[str, Any] = {
                "client": client,
                "store": store,
                "waiter": waiter,
                "clock": clock,
                "tmp": tmp,
                "max_resumes": config.max_resumes,
                "cancel_at": cancel_at,
            }
            done = asyncio.Event()
            planter = asyncio.create_task(plant_duplicates(sandbox, records, config.plant, done))
            try:
                await asyncio.gather(
                    *(_one(r, sandbox, gate, capture, given, **kw) for r in records)
                )
            finally:
                done.set()
                planted = await planter
            for record in records:
                stored = parse_state((await store.load(record.flow_id)).data)
                record.generations = len(stored.generations)
                record.ended = tuple(g.ended for g in stored.generations)
                record.unconfirmed_creates = sum(g.unconfirmed_creates for g in stored.generations)
                _check_outcome(record)
            await store.close()
            report = ChaosReport(config, records, revocations=revocations[0], planted=planted)
        report.sim_seconds = clock.time() - start
        _figures(report, sandbox, tmp)
        typed = Counter(sid for sid, _ in given)
        cancelled = {r.reference for r in records if r.cancelled}
        report.count = count_duplicates(sandbox, typed, cancelled)
        report.duplicates, report.duplicate_details = report.count.total, report.count.details
        _check_orphans(report)
        _check_downloads(report, sandbox, tmp)
        secrets_ = _secrets(sandbox, records, [code for _, code in given], password)
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
    # Every route loses answers after processing them, and answers too slowly. A lost
    # create answer cannot be settled (no idempotency key, no listing): the flow creates
    # again and reports it, and the count expects the orphan. Unsafe calls are slowed
    # after processing (slow_answer): a call processed later than the client gave up on
    # it is a different fault, whose outcome no status read can settle in time.
    for route in ("create_workflow", *_ROUTES_AFTER_CREATE):
        add("drop_after", route=route, rate=0.01)
        slow = "slow_answer" if route in UNSAFE else "slow"
        add(slow, route=route, rate=0.005, delay=config.slow_delay)
        if route != "create_workflow":
            add("revoke_token", route=route, rate=0.002)
    add("unreadable_pdf", route="download_signed_document", rate=0.005)
    add("hostile_name", route="download_signed_document", rate=0.03)
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
    given: list[tuple[str, str]],
    *,
    client: QESClient,
    store: SQLiteFlowStore,
    waiter: HybridWaiter,
    clock: FakeClock,
    tmp: Path,
    max_resumes: int,
    cancel_at: dict[str, float],
) -> None:
    documents = [
        Document.from_bytes(
            name,
            # The first document is the flow's own; the others are shared annexes, so
            # the sandbox signs them once (its signing is keyed by content and signer).
            make_pdf(f"Contract {record.index}" if j == 0 else f"Annex {j}"),
            display_name=f"Document {j + 1}",
        )
        for j, name in enumerate(record.names)
    ]
    signer = make_signer(record.scenario, sandbox.latest_passcode, clock, given)
    options: dict[str, Any] = {
        "waiter": waiter,
        "clock": clock,
        "download_dir": tmp / record.flow_id,
        "trust_roots": [sandbox_ca().certificate_der],
        "expected_signer_name": "Jane Doe",
        "lease_ttl": 60.0,
    }

    def new_flow() -> SignatureFlow:
        return SignatureFlow(
            client,
            documents=documents,
            mobile_number=record.mobile,
            client_reference=record.reference,
            signer=signer,
            store=store,
            flow_id=record.flow_id,
            **options,
        )

    async with gate:
        flow = new_flow()
        cancel = record.cancelled
        while True:
            try:
                if cancel:
                    cancel = False
                    if await _cancelled(flow, cancel_at[record.flow_id]):
                        try:
                            flow = await SignatureFlow.resume(
                                record.flow_id,
                                client=client,
                                store=store,
                                signer=signer,
                                documents=documents,
                                **options,
                            )
                        except FlowNotFoundError:
                            # Cancelled before its first checkpoint: nothing was created
                            # (the checkpoint comes first), so it starts again.
                            flow = new_flow()
                        continue
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
                    documents=documents,
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
            record.contract = result.contract is not None
            record.downloads = [
                {
                    "signature_id": result.signature_id,
                    "document_id": doc.document_id,
                    "validation": doc.validation,
                }
                for doc in result.documents
            ]
            record.problems += _check_documents(result, record, options["download_dir"])
            break


async def _cancelled(flow: SignatureFlow, after: float) -> bool:
    """Run ``flow`` and cancel it after ``after`` real seconds; True if it was cancelled
    (the caller resumes it from the store), False if it ended first (then its outcome
    is read by running it again: a finished flow returns its stored result)."""
    task = asyncio.ensure_future(flow.run())
    done, _ = await asyncio.wait({task}, timeout=after)
    if done:
        with contextlib.suppress(Exception):
            task.result()
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return True


def _check_documents(result: Any, record: FlowRecord, folder: Path) -> list[str]:
    """What is on disk against the result: one file per document, each where it belongs,
    under its own name, holding the bytes its record's sha256 names."""
    problems = []
    if record.outcome == "signed" and len(result.documents) != len(record.names):
        problems.append(f"signed with {len(result.documents)} of {len(record.names)} documents")
    paths = [Path(doc.path) for doc in result.documents]
    if len(set(paths)) != len(paths):
        problems.append("two documents saved to one path")
    for doc, path in zip(result.documents, paths, strict=True):
        if not path.is_file():
            problems.append(f"{path.name}: missing")
            continue
        if not path.resolve().is_relative_to(folder.resolve()):
            problems.append(f"{path}: outside the flow's download folder")
        if len(path.name.encode()) > 200 or not path.name.endswith(".pdf"):
            problems.append(f"{path.name[:40]}...: a name over 200 bytes or without .pdf")
        if hashlib.sha256(path.read_bytes()).hexdigest() != doc.sha256:
            problems.append(f"{path.name}: sha256 differs from the record")
    return problems


def _check_orphans(report: ChaosReport) -> None:
    """Each orphan the service holds is reported by its flow. A flow may report more: a
    5xx answer to a create leaves its outcome unknown to the client, though the plan's
    server errors are answered before the service's logic."""
    for record in report.flows:
        orphans = report.count.orphans.get(record.reference, 0)
        if record.unconfirmed_creates < orphans:
            record.problems.append(
                f"reported {record.unconfirmed_creates} unconfirmed create(s); the service "
                f"holds {orphans} orphan workflow(s) of its client reference"
            )


def _check_downloads(report: ChaosReport, sandbox: SandboxServer, tmp: Path) -> None:
    """Each signed document's validation against what the sandbox last sent for it: an
    unreadable PDF must say `unreadable`, every other one `valid`."""
    last: dict[tuple[str, str], str | None] = {}
    for r in sandbox.request_log:
        if r.route == "download_signed_document" and r.status == 200 and r.signature_id:
            last[(r.signature_id, r.path.rsplit("/", 1)[1])] = r.fault
    for record in report.flows:
        if record.outcome != "signed":
            continue
        files = sorted(p.name for p in (tmp / record.flow_id).rglob("*.pdf"))
        for doc in record.downloads:
            sent = last.get((doc["signature_id"], doc["document_id"]))
            expected = "unreadable" if sent == "unreadable_pdf" else "valid"
            record.unreadable += expected == "unreadable"
            if doc["validation"] != expected:
                record.problems.append(
                    f"{doc['document_id'][:8]}: PAdES {doc['validation']}, expected {expected}"
                )
        expected_files = record.documents + (1 if record.contract else 0)
        if len(files) != expected_files:
            record.problems.append(f"{len(files)} PDF files on disk, {expected_files} expected")


def _check_outcome(record: FlowRecord) -> None:
    scenario = record.scenario
    if record.outcome != scenario.expect:
        record.problems.append(f"outcome {record.outcome}, expected {scenario.expect}")
    # The restart the scenario forces must have happened. Not always first: a slow fault
    # holds a call for real seconds while simulated time runs thousands of times faster,
    # so a window may expire before it (and the flow rightly restarts for that first).
    if scenario.first_ended is not None and not any(
        why in scenario.first_ended for why in record.ended[:-1]
    ):
        record.problems.append(f"no generation ended {scenario.first_ended}: {record.ended}")


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
