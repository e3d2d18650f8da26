"""Worker: one process's share of a many-worker deployment.

It bundles the pieces every worker runs: the shared :class:`PostgresFlowStore`, one LISTEN
connection, the webhook relay feeding a local dispatcher, the signer relay in front of a
local inbox, a heartbeat that keeps the leases of the flows it drives, and a sweeper that
resumes flows nobody drives (their worker crashed or was stopped) and flows that are due.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import attrs

from .._core.errors import StaleStateError
from .._flow.driver import FlowResult, FlowView, SignatureFlow
from .._flow.sources import DocumentSource
from .._flow.store import Lease, StoredFlow
from .._runtime.clock import Clock, SystemClock
from .._signers.signer import SignerInbox
from .._waiting.dispatcher import WebhookDispatcher
from ._documents import DEFAULT_MAX_DOCUMENT_SIZE, PostgresDocumentSource
from ._listener import Listener, cancel_and_wait
from ._relay import PostgresRelay
from ._schema import DEFAULT_PREFIX
from ._signer_relay import DEFAULT_SUBMISSION_MAX_AGE, SignerRelay
from ._store import PostgresFlowStore

__all__ = ["LeasingStore", "Resume", "Worker", "WorkerSettings", "WorkerStats"]

log = logging.getLogger("qes_async.postgres")

#: The ``resume=`` callback of a :class:`Worker`: ``async def resume(flow_id: str) ->
#: SignatureFlow``, the stored flow loaded (``SignatureFlow.resume``) but not yet run.
Resume = Callable[[str], Awaitable[SignatureFlow]]

_SWEEP_BATCH = 16  # flows a sweep claims and resumes at once


@attrs.frozen
class WorkerSettings:
    """The knobs of a :class:`Worker` (all seconds unless said otherwise).

    Attributes:
        prefix: the table name prefix.
        lease_ttl: how long a lease lasts; the heartbeat renews it every third of that, so
            a crashed worker's flows are taken over after at most this long.
        sweep_interval: how often the sweeper looks for orphaned and due flows.
        orphan_grace: an unleased flow is left alone this long after its last save (its
            creator is about to lease it).
        max_flows: the most flows this worker drives at once (the sweeper stops there).
        relay_poll_interval: the relay's safety re-read interval.
        signer_claim_timeout: how long a submission for a flow the store does not know
            waits for a worker to claim it (then ``NO_SUCH_FLOW``).
        signer_answer_within: how long a submission for a stored flow waits for its
            driver to take it; then, or at once when nobody holds the flow's lease, it is
            kept for the flow's next driver and answered ``MOVING`` with a
            ``retry_after`` (what is left of the lease + ``sweep_interval`` + 1 s).
        signer_submission_max_age: a signer submission nobody claimed (its worker died) is
            deleted, secret and all, after this long (default two hours).
        event_retention: webhook events older than this are pruned by the sweeper.
        pool_size: connections in the worker's pool.
        max_document_size: the largest document the worker's default document source
            (:class:`PostgresDocumentSource`) keeps, in bytes.
    """

    prefix: str = DEFAULT_PREFIX
    lease_ttl: float = 30.0
    sweep_interval: float = 5.0
    orphan_grace: float = 30.0
    max_flows: int = 1000
    relay_poll_interval: float = 5.0
    signer_claim_timeout: float = 5.0
    signer_answer_within: float = 1.0
    signer_submission_max_age: float = DEFAULT_SUBMISSION_MAX_AGE
    event_retention: float = 24 * 3600.0
    pool_size: int = 10
    max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE


@attrs.frozen
class WorkerStats:
    """A worker's counters since it started, for metrics and health checks.

    Attributes:
        worker_id: the worker's name.
        running: flows it drives now.
        completed: flow runs that ended here with a result (signed, declined, ...).
        stopped: flow runs that ended here with an error (the store keeps why; the sweeper
            may resume them).
        taken_over: flows it resumed for a worker that crashed or stopped.
        leases_lost: flows it stopped because another worker took their lease.
        events_relayed: webhook events handed to its waiters.
        submissions_served: consents, passcodes and selfies it took for its flows from
            other workers.
    """

    worker_id: str
    running: int
    completed: int
    stopped: int
    taken_over: int
    leases_lost: int
    events_relayed: int
    submissions_served: int


class LeasingStore(PostgresFlowStore):
    """The worker's :class:`PostgresFlowStore` as its flows see it (``worker.store``).

    It is the full store (``orphaned()``, ``unfinished()``, ``renew()``... on the worker's
    pool, opened by :meth:`Worker.start`), and it also tags each lease a flow takes with
    the worker's id and remembers it, so the heartbeat renews it while the flow waits for
    a human. Its pool is the worker's: opening or closing it is the worker's business.
    """

    _checkpoint_text: ClassVar[bool] = True  # its saves are PostgresFlowStore's own

    def __init__(self, inner: PostgresFlowStore, worker_id: str, ttl: float) -> None:
        super().__init__(pool=inner, prefix=inner.tables.prefix, clock=inner.clock)
        self.inner = inner
        self._worker_id = worker_id
        self._ttl = ttl
        self.leases: dict[str, Lease] = {}
        self.claims: dict[str, str] = {}
        # Flows the sweeper claimed, as the claim read them: the resume's load takes them.
        self._claimed: dict[str, StoredFlow] = {}

    @property
    def pool(self) -> Any:
        """The worker's asyncpg pool (after :meth:`Worker.start`)."""
        return self.inner.pool

    async def open(self) -> PostgresFlowStore:
        """A no-op: :meth:`Worker.start` opens the pool."""
        return self

    async def close(self) -> None:
        """A no-op: :meth:`Worker.close` closes the pool."""

    async def acquire(self, flow_id: str, owner: str, ttl: float) -> Lease:
        """Take the lease for this worker (its id, a slash, the run's owner).

        A lease this owner holds with more than half its TTL left (the sweeper's claim
        just took it, or the heartbeat renewed it) is returned as it is, without a round
        trip: a run re-acquires at its checkpoints when its own copy runs short, and the
        heartbeat has extended the lease meanwhile. Saves stay fenced by its token.
        """
        # A flow the sweeper claimed keeps the claim's owner, so its run renews the claim.
        tagged = self.claims.get(flow_id) or f"{self._worker_id}/{owner}"
        held = self.leases.get(flow_id)
        if (
            held is not None
            and held.owner == tagged
            and held.expires_at - self.clock.time() > self._ttl / 2
        ):
            return held
        lease = await super().acquire(flow_id, tagged, self._ttl)
        self.leases[flow_id] = lease
        return lease

    async def claim(self, flow_id: str) -> Lease:
        """Lease ``flow_id`` for this worker before resuming it (StaleStateError if held)."""
        owner = f"{self._worker_id}/{uuid.uuid4().hex[:12]}"
        lease = await super().acquire(flow_id, owner, self._ttl)
        self.claims[flow_id] = owner
        self.leases[flow_id] = lease
        return lease

    async def claim_orphans(self, *, idle_for: float, limit: int, skip: Sequence[str]) -> list[str]:
        """Lease the most urgent orphaned flows for this worker, in one statement
        (:meth:`PostgresFlowStore.claim_orphaned`); their ids, most urgent first. The
        next :meth:`load` of each returns the row the claim read, without a round trip."""
        owner = f"{self._worker_id}/{uuid.uuid4().hex[:12]}"
        claimed = await self.claim_orphaned(
            owner, self._ttl, idle_for=idle_for, limit=limit, skip=skip
        )
        for lease, stored in claimed:
            self.claims[lease.flow_id] = owner
            self.leases[lease.flow_id] = lease
            self._claimed[lease.flow_id] = stored
        return [lease.flow_id for lease, _ in claimed]

    async def load(self, flow_id: str) -> StoredFlow:
        """The stored flow (as the sweeper's claim read it, the first time after one)."""
        stored = self._claimed.pop(flow_id, None)
        return stored if stored is not None else await super().load(flow_id)

    def forget(self, flow_id: str) -> None:
        """Drop what is remembered of ``flow_id`` (its run ended)."""
        self.claims.pop(flow_id, None)
        self.leases.pop(flow_id, None)
        self._claimed.pop(flow_id, None)

    async def release(self, lease: Lease) -> None:
        """Give the lease up and stop renewing it."""
        if self.leases.get(lease.flow_id) == lease:
            del self.leases[lease.flow_id]
        await super().release(lease)

    def __repr__(self) -> str:
        return f"LeasingStore({self.inner!r}, leases={len(self.leases)})"


class Worker:
    """Drives flows in one process of a many-worker app, on a shared PostgreSQL.

    Give new flows ``store=worker.store``, ``signer=worker.inbox`` (or your own signer) and
    a waiter on ``worker.dispatcher`` (:class:`~qes_async.HybridWaiter`), then
    :meth:`drive` them.  Serve webhooks with ``worker.relay.aiohttp_routes(receiver)`` for a
    ``WebhookReceiver(worker.relay.recorder, auth)``, and signer answers with
    ``worker.signer.submit_consent/submit_passcode``: both work on any worker.
    :meth:`result` reads any flow's result or progress, on any worker.

    Before :meth:`start`: ``store``, ``pg``, ``document_source``, ``dispatcher``,
    ``inbox``, ``settings``, ``worker_id`` and :meth:`stats` may be used, and handed to
    flows and waiters; what reads the database (a call of ``store``, ``pg`` or
    ``document_source``, :meth:`result`, :meth:`sweep`) raises :class:`RuntimeError`
    until ``start`` has opened the pool. ``relay`` and ``signer`` exist only after it and
    raise :class:`RuntimeError` before, as :meth:`drive` does.

    ``store`` is a :class:`LeasingStore`: the full :class:`PostgresFlowStore`
    (``orphaned()``, ``unfinished()``...) on the worker's pool, whose leases the
    heartbeat renews; ``pg`` is the same store without that bookkeeping.

    Args:
        dsn: the libpq connection string (never logged or shown).
        resume: ``async def resume(flow_id: str) -> SignatureFlow``, how this app resumes
            a stored flow (``SignatureFlow.resume(flow_id, client=..., store=worker.store,
            signer=worker.inbox, waiter=..., documents=...)``): used by the sweeper.
        settings: :class:`WorkerSettings`.
        worker_id: a name unique among workers (default: random).
        clock: the clock of leases (default: the system clock).
        document_source: where flows keep their documents so that any worker can resume
            or restart them (default: a :class:`PostgresDocumentSource` on the worker's
            database); give flows, and ``SignatureFlow.resume`` in ``resume``,
            ``document_source=worker.document_source``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        resume: Resume,
        settings: WorkerSettings | None = None,
        worker_id: str | None = None,
        clock: Clock | None = None,
        document_source: DocumentSource | None = None,
    ) -> None:
        self.settings = s = settings or WorkerSettings()
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.clock: Clock = clock or SystemClock()
        self._resume = resume
        self.pg = PostgresFlowStore(
            dsn, prefix=s.prefix, clock=self.clock, min_size=2, max_size=s.pool_size
        )
        self.store = LeasingStore(self.pg, self.worker_id, s.lease_ttl)
        self.document_source: DocumentSource = document_source or PostgresDocumentSource(
            self.pg, max_document_size=s.max_document_size
        )
        self.dispatcher = WebhookDispatcher(clock=self.clock)
        self.inbox = SignerInbox(clock=self.clock)
        self.listener = Listener(dsn, clock=self.clock)
        self.running: dict[str, asyncio.Task[FlowResult | None]] = {}
        self.taken_over = 0
        self.completed = 0
        self.stopped = 0
        self.leases_lost = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._relay: PostgresRelay | None = None
        self._signer: SignerRelay | None = None

    @property
    def relay(self) -> PostgresRelay:
        """The webhook relay (after :meth:`start`)."""
        if self._relay is None:
            raise RuntimeError("worker.relay exists once the worker started: await worker.start()")
        return self._relay

    @property
    def signer(self) -> SignerRelay:
        """Where web requests submit consent, passcode and selfie (after :meth:`start`)."""
        if self._signer is None:
            raise RuntimeError("worker.signer exists once the worker started: await worker.start()")
        return self._signer

    async def result(self, flow_id: str) -> FlowView:
        """A flow's result if it has finished, else where it stands (step, status, next
        deadline), read from the shared store: any worker can answer for any flow, and
        no service call is made.

        Raises:
            FlowNotFoundError: no stored flow has this id.
        """
        return await SignatureFlow.read(flow_id, store=self.pg)

    def stats(self) -> WorkerStats:
        """The worker's counters now (cheap: no database call)."""
        return WorkerStats(
            worker_id=self.worker_id,
            running=len(self.running),
            completed=self.completed,
            stopped=self.stopped,
            taken_over=self.taken_over,
            leases_lost=self.leases_lost,
            events_relayed=self._relay.relayed if self._relay is not None else 0,
            submissions_served=self._signer.served if self._signer is not None else 0,
        )

    def drives(self, flow_id: str) -> bool:
        """Whether this worker drives ``flow_id`` now."""
        return flow_id in self.running

    async def start(self) -> Worker:
        """Open the pool, connect the listener, start heartbeat and sweeper.

        If any of it fails, what was started is closed again before the error is raised.
        """
        try:
            return await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> Worker:
        s = self.settings
        await self.pg.open()
        pool = self.pg.pool
        self._relay = PostgresRelay(
            pool,
            self.listener,
            self.dispatcher,
            prefix=s.prefix,
            poll_interval=s.relay_poll_interval,
        )
        self._signer = SignerRelay(
            pool,
            self.listener,
            self.inbox,
            drives=self.drives,
            worker_id=self.worker_id,
            prefix=s.prefix,
            claim_timeout=s.signer_claim_timeout,
            clock=self.clock,
            submission_max_age=s.signer_submission_max_age,
            answer_within=s.signer_answer_within,
            retry_after=s.sweep_interval + 1.0,
        )
        await self._relay.start()
        await self.listener.start()
        await self._signer.start()
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name="qes-worker-heartbeat"),
            asyncio.create_task(self._sweeper(), name="qes-worker-sweeper"),
        ]
        return self

    async def close(self) -> None:
        """Stop sweeping, cancel the flows driven here (their leases are released, so
        another worker's sweeper resumes them), and disconnect."""
        await cancel_and_wait(*self._tasks, *self.running.values())
        self._tasks = []
        if self._signer is not None:
            await self._signer.close()
        if self._relay is not None:
            await self._relay.close()
        await self.listener.close()
        await self.pg.close()

    async def __aenter__(self) -> Worker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def drive(self, flow: SignatureFlow) -> asyncio.Task[FlowResult | None]:
        """Run ``flow`` here under its lease; the task's result is None if another worker
        drives it, or it failed (the store keeps why).

        Raises:
            RuntimeError: the worker has not started.
        """
        if self._signer is None:
            raise RuntimeError("worker.drive() needs a started worker: await worker.start()")
        flow_id = flow.flow_id
        task = asyncio.create_task(self._drive(flow), name=f"qes-flow-{flow_id}")
        self.running[flow_id] = task
        return task

    async def _drive(self, flow: SignatureFlow) -> FlowResult | None:
        try:
            result = await flow.run()
            self.completed += 1
            return result
        except StaleStateError:
            log.info("flow %s is driven by another worker", flow.flow_id)
            return None
        except Exception as exc:
            self.stopped += 1
            log.warning("flow %s stopped: %s", flow.flow_id, type(exc).__name__)
            return None
        finally:
            self.running.pop(flow.flow_id, None)
            self.store.forget(flow.flow_id)

    async def sweep(self) -> int:
        """Resume orphaned and due flows nobody drives, up to ``max_flows``; how many.

        The flows a person waits on come first (their step asks the signer), then those
        whose deadline is nearest. Each batch is claimed in one statement that skips what
        another worker is claiming, so workers sweeping together spread out.
        """
        room = self.settings.max_flows - len(self.running)
        started = 0
        tried: set[str] = set()
        # A few at once: after a worker's death its flows come back in one sweep, and one
        # at a time took longer than the lease for a thousand of them.
        while started < room:
            ids = await self.store.claim_orphans(
                idle_for=self.settings.orphan_grace,
                limit=min(_SWEEP_BATCH, room - started),
                skip=[*tried, *self._maybe_orphaned_here()],
            )
            if not ids:
                break
            tried.update(ids)
            started += sum(await asyncio.gather(*(self._take_over(f) for f in ids)))
        return started

    def _maybe_orphaned_here(self) -> list[str]:
        """Flows run here that a claim could find orphaned (no lease, or one run out as
        far as this worker knows): the sweep leaves them to their run."""
        soon = self.clock.time() + 1.0
        leases = self.store.leases
        return [
            flow_id
            for flow_id in self.running
            if (lease := leases.get(flow_id)) is None or lease.expires_at <= soon
        ]

    async def _take_over(self, flow_id: str) -> bool:
        """Resume and drive one flow the sweep claimed; False if it ended meanwhile."""
        lease = self.store.leases[flow_id]
        try:
            flow = await self._resume(flow_id)
        except BaseException as exc:
            await self._let_go(flow_id, lease)
            if not isinstance(exc, Exception):
                raise
            # One flow that cannot be resumed must not end the sweep for the others.
            log.warning("could not resume flow %s (%s)", flow_id, type(exc).__name__)
            return False
        if flow.state is not None and flow.state.finished:
            await self._let_go(flow_id, lease)  # it ended on its own worker meanwhile
            return False
        self.drive(flow)
        self.taken_over += 1
        return True

    async def _let_go(self, flow_id: str, lease: Lease) -> None:
        self.store.forget(flow_id)
        await self.pg.release(lease)

    async def _sweeper(self) -> None:
        interval = self.settings.sweep_interval
        await self.clock.sleep_until(self.clock.time() + random.uniform(0, interval), passive=True)
        sweeps = 0
        while True:
            try:
                taken = await self.sweep()
                if taken:
                    log.info("sweeper resumed %d flow(s)", taken)
                sweeps += 1
                if sweeps % 100 == 0:
                    await self.relay.prune(self.settings.event_retention)
                    prune = getattr(self.document_source, "prune", None)
                    if prune is not None:
                        await prune()  # documents of flows whose worker died as they ended
            except Exception as exc:
                log.warning("sweep failed (%s)", type(exc).__name__)
            await self.clock.sleep_until(
                self.clock.time() + interval * random.uniform(0.8, 1.2), passive=True
            )

    async def _heartbeat(self) -> None:
        while True:
            await self.clock.sleep_until(
                self.clock.time() + self.settings.lease_ttl / 3, passive=True
            )
            await self.renew_leases()

    async def renew_leases(self) -> int:
        """Renew the leases of the flows driven here, in one statement; stop the flows
        whose lease another worker took. Returns how many were renewed (the heartbeat
        calls this every ``lease_ttl / 3``)."""
        held = dict(self.store.leases)
        try:
            # renew, not acquire: a lease its flow released meanwhile stays free
            renewed = await self.pg.renew_many(list(held.values()), self.settings.lease_ttl)
        except Exception as exc:
            log.warning("lease renewal failed (%s)", type(exc).__name__)
            return 0
        for flow_id, lease in held.items():
            if flow_id in renewed:
                if self.store.leases.get(flow_id) == lease:
                    self.store.leases[flow_id] = renewed[flow_id]
                continue
            if flow_id not in self.store.leases:
                continue  # its run ended and let go of it while we looked
            if self.store.leases[flow_id] != lease:
                continue  # its run took a new lease meanwhile (a checkpoint's renewal)
            if await self._finished(flow_id):
                # A late renewal (a busy loop) found the lease expired after the run had
                # saved the flow's end: the run is returning, not lost.
                continue
            log.warning("lost the lease of flow %s; stopping it here", flow_id)
            self.leases_lost += 1
            task = self.running.get(flow_id)
            if task is not None:
                task.cancel()
        return len(renewed)

    async def _finished(self, flow_id: str) -> bool:
        try:
            return (await self.pg.load(flow_id)).finished
        except Exception:  # unreadable now: treat the lease as lost, as before
            return False

    def __repr__(self) -> str:
        return f"Worker({self.worker_id!r}, driving={len(self.running)})"
