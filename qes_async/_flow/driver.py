"""SignatureFlow: one coroutine from documents to verified signed PDFs.

The driver is short on purpose: the pure machine (``_flow_machine``) says what to do next,
and this module only turns each action into client, waiter and signer calls, checkpoints the
state (``_flow_state``) to a :class:`~qes_async.FlowStore` after every step, and emits
:class:`FlowEvent` values.  Unsafe calls (create, upload documents, approve, confirm) are
marked *in flight* in the stored state before they are sent; after an unknown outcome or a
resume the flow re-reads the remote status and decides from it, so no approval or
confirmation is ever sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._client.documents import Document
from .._client.validation import (
    DEFAULT_WORKFLOW_NAME,
    check_language,
    check_mobile_number,
    check_workflow_name,
)
from .._core.errors import (
    DocumentCheckError,
    FlowError,
    FlowNotFoundError,
    InvalidInputError,
    StaleStateError,
)
from .._core.recent import Recent
from .._core.redact import mask_phone
from .._runtime import telemetry as _telemetry
from .._runtime.clock import Clock, SystemClock
from .._runtime.logs import logger as log
from .._signers.signer import Signer
from . import machine as fm
from .collaborators import FlowClient, StepContext
from .events import EventHub, FlowEvent, FlowEventKind
from .evidence import Evidence, chain_entry
from .sources import DocumentSource
from .state import (
    DocumentRecord,
    DownloadRecord,
    FlowState,
    Generation,
    StateEncoder,
    parse_state,
)
from .steps import StepRunner
from .store import FlowStore, Lease, MemoryFlowStore

if TYPE_CHECKING:
    from .._waiting.waiters import StatusWaiter

__all__ = [
    "FlowEvent",
    "FlowOutcome",
    "FlowResult",
    "FlowView",
    "RestartPolicy",
    "SignatureFlow",
]

# The actions before which a resumed flow must have its documents (a new workflow).
_NEEDS_DOCUMENTS = frozenset({fm.Action.CREATE_WORKFLOW, fm.Action.UPLOAD_DOCUMENTS})

# Releases of leases that a cancelled run took after all; kept so they are not collected.
_GIVING_BACK: set[asyncio.Future[None]] = set()


@attrs.frozen
class FlowView:
    """A stored flow as any process can read it, without a service call.

    Attributes:
        flow_id: the flow's id.
        finished: whether the flow has ended (then ``result`` is set).
        step: where the flow stands (``await_consent``, ``passcode``, ``signed``...).
        signature_id: the current generation's signature id (None before the workflow).
        status: the last status the flow observed (None before any).
        next_deadline: the deadline of the window the flow is in (POSIX seconds), if any.
        updated_at: when it was last checkpointed (POSIX seconds).
        result: the :class:`FlowResult` of a finished flow, else None.
    """

    flow_id: str
    finished: bool
    step: str
    signature_id: str | None
    status: str | None
    next_deadline: float | None
    updated_at: float
    result: FlowResult | None = None


class FlowOutcome(str, enum.Enum):
    """How a flow ended."""

    SIGNED = "signed"
    DECLINED = "declined"
    KYC_REQUIRED = "kyc_required"
    FAILED = "failed"


@attrs.frozen
class RestartPolicy:
    """When a spent workflow is replaced by a new signature-only one, and how often.

    Attributes:
        max_restarts: how many new workflows one flow may create after the first.
        on: the reasons that allow a restart (every :class:`RestartReason` by default).
    """

    max_restarts: int = 3
    on: frozenset[fm.RestartReason] = frozenset(fm.RestartReason)

    def allows(self, reason: fm.RestartReason, generations: int) -> bool:
        """Whether one more generation is allowed for ``reason``."""
        return reason in self.on and fm.should_restart(generations, self.max_restarts)


_PATH = type(Path())  # the concrete Path of this platform
_OPTIONS: Recent[_Options, _Options] = Recent(256)  # see _shared_options

_DEFAULT_RESTART = RestartPolicy()  # frozen: one shared by every flow not given one


@attrs.frozen
class FlowResult:
    """What a finished flow produced.

    Attributes:
        outcome: signed or declined (failures raise instead; the store keeps them).
        documents: every signed document saved, with its path, SHA-256, size and PAdES
            validation outcome (``valid``, ``untrusted``, ``invalid`` or ``not_checked``).
        contract: the InfoCert contract when the flow went to InfoCert, else None.
        generations: every workflow the flow used, oldest first, with why each ended.
        unconfirmed_creates: how many ``create_workflow`` calls got no answer. Each may
            have left a workflow at the service that the flow never used (its id cannot
            be known; see README "What can go wrong"). 0 in the usual case.
        evidence: the flow's evidence record (:class:`~qes_async.Evidence`): what the
            client was shown, approved and signed, as a hash chain; see README "Evidence".
    """

    flow_id: str
    outcome: FlowOutcome
    documents: tuple[DownloadRecord, ...]
    contract: DownloadRecord | None
    generations: tuple[Generation, ...]
    evidence: Evidence | None = attrs.field(default=None, repr=False, eq=False)

    def as_json(self) -> dict[str, Any]:
        """The result as plain JSON data (snake_case), as ``qes-async --json`` prints it."""
        contract = self.contract
        return {
            "flow_id": self.flow_id,
            "outcome": self.outcome.value,
            "signature_id": self.signature_id,
            "generations": len(self.generations),
            "unconfirmed_creates": self.unconfirmed_creates,
            "documents": [
                {
                    "document_id": d.document_id,
                    "path": d.path,
                    "sha256": d.sha256,
                    "size": d.size,
                    "validation": d.validation,
                    "signer": d.signer,
                }
                for d in self.documents
            ],
            "contract": None
            if contract is None
            else {"path": contract.path, "sha256": contract.sha256, "size": contract.size},
        }

    @property
    def unconfirmed_creates(self) -> int:
        """``create_workflow`` calls without an answer, over every generation."""
        return sum(g.unconfirmed_creates for g in self.generations)

    @property
    def signature_id(self) -> str | None:
        """The signature id of the last generation."""
        return self.generations[-1].signature_id if self.generations else None


class SignatureFlow:
    """Drives one signing job: create, upload, consent, passcode, wait, download, check.

    Args:
        client: a :class:`~qes_async.QESClient` (one client serves thousands of flows).
        documents: the PDFs to sign (:class:`~qes_async.Document`).
        mobile_number: the signer's mobile number (E.164), for the passcode SMS.
        client_reference: your id of the client (whose identity case is used).
        signer: answers consent, passcode and selfie (a :class:`~qes_async.Signer`).
        waiter: a :class:`~qes_async.StatusWaiter` (default: polling on ``clock``).
        store: where checkpoints go (default: in memory; use
            :class:`~qes_async.SQLiteFlowStore` to survive a crash).
        flow_id: the id to store the flow under (default: a new UUID).
        signature_id: start from an existing signature instead of creating a workflow.
        clock: the shared clock (default: the client's, else the system clock).
        restart_policy: see :class:`RestartPolicy`.
        download_dir: folder for the signed PDFs (created if missing).
        trust_roots: CA certificates (DER or PEM) for PAdES validation.
        expected_signer_name: the client's name the signing certificate must carry.
        require_valid_signature: raise :class:`DocumentCheckError` unless a downloaded PDF
            validates as ``valid`` (default: record the outcome only).
        language: the language of the legal conditions (a BCP 47 tag; case does not
            matter).
        passcode_language: the language of the SMS (a BCP 47 tag; case does not matter).
        workflow_name: the workflow name agreed with Fourthline for your product (opaque and
            case-sensitive, such as ``QES`` or ``IDVandQES``; default ``qes``). It is stored
            with the flow, so a restart or a resumed flow creates the same kind of workflow.
        deadline_warning: seconds before a deadline when ``deadline_approaching`` fires.
        wait_timeout: the longest wait for one status change.
        outcome_grace: after an unknown outcome of an approval or confirmation, how long
            its outcome may take to show in the status, counted from when it was sent
            (default 30 s). A flow resumed later (a takeover) re-reads the status once and
            waits only for what is left of this.
        lease_ttl: seconds a worker's lease on the flow lasts (renewed at each checkpoint);
            after a crash another worker can resume the flow once it ran out.
        on_event: a callback (sync or async) for every :class:`FlowEvent`.
        document_source: where the documents are kept so that a resume or a restart on
            any worker finds them again (a :class:`~qes_async.DocumentSource`, such as
            :class:`~qes_async.FileDocumentSource` or
            ``qes_async.postgres.PostgresDocumentSource``): stored before the flow is,
            loaded by :meth:`resume`, discarded once the flow has ended.
    """

    #: Set by the telemetry recorder while a run is traced (a class default: no cost per
    #: flow when telemetry is off).
    _trace: _telemetry.FlowTrace | None = None

    def __init__(
        self,
        client: FlowClient,
        *,
        documents: Sequence[Document] = (),
        mobile_number: str = "",
        client_reference: str = "",
        signer: Signer,
        waiter: StatusWaiter | None = None,
        store: FlowStore | None = None,
        flow_id: str | None = None,
        signature_id: str | None = None,
        clock: Clock | None = None,
        restart_policy: RestartPolicy | None = None,
        download_dir: str | Path = "signed",
        trust_roots: Sequence[bytes] = (),
        expected_signer_name: str | None = None,
        require_valid_signature: bool = False,
        language: str | None = None,
        passcode_language: str | None = None,
        deadline_warning: float = 600.0,
        wait_timeout: float = 24 * 3600.0,
        outcome_grace: float = 30.0,
        lease_ttl: float = 300.0,
        on_event: Callable[[FlowEvent], object] | None = None,
        workflow_name: str = DEFAULT_WORKFLOW_NAME,
        document_source: DocumentSource | None = None,
    ) -> None:
        check_workflow_name(workflow_name)
        for value, name in ((language, "language"), (passcode_language, "passcode_language")):
            if value is not None:
                check_language(value, name)
        self.client = client
        self.clock: Clock = clock or getattr(client, "clock", None) or SystemClock()
        self.signer = signer
        self.store: FlowStore = store if store is not None else MemoryFlowStore(clock=self.clock)
        self._encoder = StateEncoder()  # each evidence entry is encoded once, not per save
        if waiter is None:
            from .._waiting.polling import PollingWaiter

            waiter = PollingWaiter(client, clock=self.clock)
        self.waiter = waiter
        self.restart_policy = restart_policy or _DEFAULT_RESTART
        self.options = _shared_options(
            # The caller's Path as it is (immutable): equal folders need no copy per flow.
            download_dir if type(download_dir) is _PATH else Path(download_dir),
            tuple(trust_roots),
            expected_signer_name,
            require_valid_signature,
            language,
            passcode_language,
            deadline_warning,
            wait_timeout,
            outcome_grace,
        )
        self._documents = list(documents)
        self.document_source = document_source
        # A resumed flow past its upload reads its documents from the source only when a
        # new workflow needs them (see resume).
        self._documents_later = False
        self._hub = EventHub((on_event,) if on_event else ())
        self._owner = uuid.uuid4().hex
        self._lease_ttl = lease_ttl
        self._lease: Lease | None = None
        self._version = 0
        self._state: FlowState | None = None
        self._resumed = False
        self._new: _NewFlow | None = _NewFlow(
            flow_id or str(uuid.uuid4()),
            client_reference,
            mobile_number,
            signature_id,
            workflow_name,
        )

    # ------------------------------------------------------------------ public surface

    @classmethod
    async def resume(
        cls,
        flow_id: str,
        *,
        client: FlowClient,
        store: FlowStore,
        signer: Signer,
        documents: Sequence[Document] = (),
        **options: Any,
    ) -> SignatureFlow:
        """Load a stored flow to continue it with :meth:`run`.

        The documents come from ``documents=`` (matched by SHA-256), else from the
        flow's ``document_source=`` (pass the one it started with), else from the paths
        they were uploaded from. A flow that has ended needs none, and one whose documents
        are uploaded already reads them from its ``document_source`` only if it must
        restart, before the new workflow is created (then a document that cannot be
        found again fails :meth:`run`, before any call).

        Raises:
            FlowNotFoundError: no stored flow has this id.
            StateFormatError: the stored state is of an unknown format version.
            DocumentCheckError: a document cannot be found again with its SHA-256
                (:class:`~qes_async.DocumentSourceError` when the source's has changed).
        """
        stored = await store.load(flow_id)
        flow = cls(client, signer=signer, store=store, flow_id=flow_id, **options)
        flow._state = parse_state(stored.data)
        flow._version = stored.version
        flow._new = None  # the stored state says all it did
        given = list(documents)
        state = flow._state
        if not state.finished:
            gen = state.generations[-1] if state.generations else None
            if not given and flow.document_source is not None:
                if gen is not None and gen.documents_uploaded and state.step is not fm.Step.RESTART:
                    # Uploaded already: only a restart needs them again, so they are read
                    # then (a takeover of many flows reads none).
                    flow._documents_later = True
                    flow._resumed = True
                    return flow
                given = await flow.document_source.load(flow_id)
            flow._documents = await _documents_back(state.documents, given)
        flow._resumed = True
        return flow

    @staticmethod
    async def read(flow_id: str, *, store: FlowStore) -> FlowView:
        """Read a stored flow: the result of a finished one, or where an unfinished one
        stands. No lease is taken and nothing is sent, so any process (a web page on
        another worker) can call it while the flow runs elsewhere.

        Raises:
            FlowNotFoundError: no stored flow has this id.
            StateFormatError: the stored state cannot be read.
        """
        stored = await store.load(flow_id)
        state = parse_state(stored.data)
        gen = state.generations[-1] if state.generations else None
        done = state.finished
        return FlowView(
            flow_id=state.flow_id,
            finished=done,
            step=state.step.value,
            signature_id=gen.signature_id if gen else None,
            status=gen.last_status if gen else None,
            next_deadline=state.next_deadline(),
            updated_at=stored.updated_at,
            result=_result_of(state) if done and state.outcome else None,
        )

    @property
    def flow_id(self) -> str:
        """The id the flow is stored under."""
        if self._state is not None:
            return self._state.flow_id
        assert self._new is not None  # dropped only once the state is set
        return self._new.flow_id

    @property
    def signature_id(self) -> str | None:
        """The signature id of the current generation (None before the workflow exists)."""
        if self._state is not None and self._state.generations:
            return self._state.generations[-1].signature_id
        return None if self._new is None else self._new.signature_id

    @property
    def state(self) -> FlowState | None:
        """The current state (None before the first run)."""
        return self._state

    @property
    def evidence(self) -> Evidence | None:
        """The evidence record so far (None before the first run); see README "Evidence"."""
        state = self._state
        return None if state is None else Evidence(state.flow_id, state.evidence)

    def events(self) -> AsyncIterator[FlowEvent]:
        """Iterate over events from now until the run ends (start before :meth:`run`)."""
        return self._hub.iterate()

    async def run(self) -> FlowResult:
        """Drive the flow to its end.

        Returns:
            the :class:`FlowResult` when the documents are signed or the signer declined;
            for a resumed flow that had already ended, its stored outcome (which may be
            ``kyc_required`` or ``failed``) without raising again.

        Raises:
            KYCRequiredError: the client needs identity verification again (``status_codes``).
            RestartLimitError: more new workflows were needed than the policy allows.
            DocumentCheckError: a document hash did not match, or a signature did not check.
            StaleStateError: another worker took the flow over.
        """
        tel = _telemetry.hook  # None unless qes_async.otel.instrument() ran
        if tel is not None:
            self._trace = tel.flow_started(self)  # the run's span, current until it ends
        try:  # whatever fails, the event iterators end
            if self._state is None:
                await self._start()
            state = self._state
            assert state is not None
            self._lease = await self._acquire(state.flow_id)
            if self._resumed and not state.finished:
                self._resumed = False
                self.note("resumed", step=state.step.value)
            runner = StepRunner(self._step_context(), state, self._documents)
            await runner.resync()
            while not state.step.is_terminal:
                action = fm.next_action(state.step)
                if self._documents_later and action in _NEEDS_DOCUMENTS:
                    runner.documents = await self._load_documents(state)
                if self._trace is None:
                    # No with block while untraced: a suspended one holds its __exit__,
                    # for as long as the step waits (hours, in every parked flow).
                    await runner.perform(action)
                else:
                    with self._traced_step(action._value_):
                        await runner.perform(action)
            return self._finish(state)
        except BaseException as exc:
            if self._trace is not None:
                self._trace.failed(exc)
            raise
        finally:
            self._hub.close()
            self._forget()
            await self._discard_documents()
            await self._release()
            if self._trace is not None:
                self._trace.finish()

    # ---------------------------------------------------------------- used by the steps

    def emit(self, kind: FlowEventKind, **fields: Any) -> None:
        """Emit one event of the current generation."""
        if self._trace is None and not self._hub.listening():
            return  # nobody would see it: no event is built
        state = self._state
        assert state is not None
        gen = state.generations[-1] if state.generations else None
        event = FlowEvent(
            kind=kind,
            flow_id=state.flow_id,
            generation=gen.number if gen else 0,
            time=self.clock.time(),
            signature_id=gen.signature_id if gen else None,
            **fields,
        )
        self._hub.emit(event)
        if self._trace is not None:
            self._trace.event(event)

    def _traced_step(self, name: str) -> _telemetry.Scope:
        """The span of one step while the run is traced (else a no-op context)."""
        return _telemetry.OFF if self._trace is None else self._trace.step(name)

    def _traced_wait(self, what: str, targets: Sequence[object] = ()) -> _telemetry.Scope:
        """The span of one wait (for a status, or the signer's ``what``), or a no-op."""
        return _telemetry.OFF if self._trace is None else self._trace.wait(what, targets)

    def note(self, kind: str, **data: Any) -> None:
        """Append one entry to the evidence record (saved with the next checkpoint)."""
        state = self._state
        assert state is not None
        chain_entry(  # (the state's record keeps the entry's text for the next checkpoint)
            state.evidence,
            kind,
            time=self.clock.time(),
            generation=state.generations[-1].number if state.generations else 0,
            data=data,
        )

    async def save(self) -> None:
        """Checkpoint the state (renewing the lease when it runs short).

        A checkpoint that has begun completes even if the run is cancelled meanwhile (the
        cancellation is raised once it is written): the state may record what the service
        has just done, such as the workflow it created, and losing that would make a
        resume do it again.
        """
        if self._store_never_suspends():
            # Nothing can cut the checkpoint short: no task and no shield are needed.
            await self._checkpoint()
            return
        checkpoint = asyncio.ensure_future(self._checkpoint())
        try:
            await asyncio.shield(checkpoint)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await checkpoint
            raise

    def _store_never_suspends(self) -> bool:
        """Whether the store is the in-memory one, whose save, acquire and release never
        suspend: they need no task and no shield to be seen through (a loop iteration
        each, and thousands of flows starting at once would hold a task each). Its exact
        class only: a subclass may suspend."""
        return type(self.store) is MemoryFlowStore

    async def _checkpoint(self) -> None:
        state = self._state
        assert state is not None
        assert self._lease is not None
        now = self.clock.time()
        state.updated_at = now
        if self._lease.expires_at - now < self._lease_ttl / 2:  # the lease runs short
            self._lease = await self._acquire(state.flow_id)
        self._version = await self.store.save(
            state.flow_id,
            self._encoder.checkpoint(state, self.store),
            expected_version=self._version,
            finished=state.finished,
            due_at=state.next_deadline(),
            lease=self._lease,
        )

    def _step_context(self) -> StepContext:
        """The few things the steps may use of this flow."""
        return StepContext(
            client=self.client,
            waiter=self.waiter,
            signer=self.signer,
            options=self.options,
            clock=self.clock,
            restart_policy=self.restart_policy,
            checkpoint=self,
        )

    def allows_restart(self, reason: fm.RestartReason) -> bool:
        """Whether the policy allows another generation for ``reason``."""
        assert self._state is not None
        return self.restart_policy.allows(reason, len(self._state.generations))

    # -------------------------------------------------------------------------- internal

    async def _start(self) -> None:
        new, now = self._new, self.clock.time()
        assert new is not None
        if not self._documents:
            raise FlowError("a new flow needs documents=", advice="Pass the PDFs to sign.")
        # Bad input is refused before anything is stored or sent: a flow never leaves a
        # half-made workflow behind because its number or a document was wrong.
        check_mobile_number(new.mobile_number)
        await asyncio.to_thread(check_download_dir, self.options.download_dir)
        await self.client.check_documents(self._documents)
        records = [await _record(doc) for doc in self._documents]
        state = FlowState(new.flow_id, new.client_reference, new.mobile_number, records, now)
        state.updated_at, state.workflow_name = now, new.workflow_name
        state.generations.append(Generation(number=1, started_at=now))
        if new.signature_id:
            state.generation.signature_id = new.signature_id
            state.step = fm.Step.AWAIT_PENDING
        self._state = state
        from .. import __version__

        self.note(
            "flow_started",
            flow_id=state.flow_id,
            client_reference=state.client_reference,
            workflow_name=state.workflow_name,
            mobile_number=mask_phone(state.mobile_number),
            signature_id=new.signature_id,
            documents=[
                {
                    "file_name": r.file_name,
                    "display_name": r.display_name,
                    "size": r.size,
                    "sha256": r.sha256,
                }
                for r in records
            ],
            sdk=_sdk(__version__),
        )
        source = self.document_source
        if source is not None:
            # Never over a stored flow's documents: a start whose id is taken would leave
            # that flow with documents it never had (its restarts could not finish).
            await self._refuse_a_taken_id(state.flow_id)
            # Before the flow exists anywhere: a flow a worker can find has its documents.
            await source.store(state.flow_id, self._documents)
        try:
            self._version = await self.store.create(
                state.flow_id, self._encoder.checkpoint(state, self.store)
            )
        except BaseException as exc:
            self._state = None
            if source is not None and not isinstance(exc, StaleStateError):
                # (a flow of this id exists already: those are its documents now)
                with contextlib.suppress(Exception):
                    await asyncio.shield(source.discard(state.flow_id))
            raise
        self._new = None  # stored: the state says all it did (a waiting flow holds less)

    async def _refuse_a_taken_id(self, flow_id: str) -> None:
        """StaleStateError, as the store's create would raise it, if ``flow_id`` is stored."""
        try:
            await self.store.load(flow_id)
        except FlowNotFoundError:
            return
        raise StaleStateError(
            f"flow {flow_id}: a flow with this id exists already",
            advice="Resume it with SignatureFlow.resume(flow_id, ...), or start the new "
            "flow under another flow_id.",
        )

    async def _load_documents(self, state: FlowState) -> list[Document]:
        """The documents of a resumed flow, from its source, before a new workflow is
        created for them (DocumentCheckError, before any call, if they cannot be found)."""
        assert self.document_source is not None
        given = await self.document_source.load(state.flow_id)
        self._documents = await _documents_back(state.documents, given)
        self._documents_later = False
        return self._documents

    def _finish(self, state: FlowState) -> FlowResult:
        # The result's evidence holds its entries' checkpoint text, decoded (by the C
        # parser) when first read: a result an app keeps costs that text, not the dicts.
        return _result_of(state)

    def _forget(self) -> None:
        """Release what the client and the waiter cache for this flow's signatures (every
        generation's) and the signer's state of the flow, however the run ended: a
        long-lived client serving thousands of flows must not keep the finished ones until
        its caches evict them. They are only caches, so a resumed run (or another flow on
        the same signature) builds them again."""
        if self._state is None:
            return
        signer_forget = getattr(self.signer, "_forget", None)
        if signer_forget is not None:
            try:
                signer_forget(self._state.flow_id)
            except Exception:  # a cache must never turn the run's outcome into an error
                log.exception("releasing the signer's state of a finished flow failed")
        client_forget = getattr(self.client, "_forget", None)
        waiter_forget = getattr(self.waiter, "_forget", None)
        for gen in self._state.generations:
            if gen.signature_id is None:
                continue
            try:
                if client_forget is not None:
                    client_forget(gen.signature_id, gen.document_ids)
                if waiter_forget is not None:
                    waiter_forget(gen.signature_id)
            except Exception:  # a cache must never turn the run's outcome into an error
                log.exception("releasing the caches of a finished flow failed")

    async def _discard_documents(self) -> None:
        """Once the flow has ended, its document source forgets its documents."""
        state, source = self._state, self.document_source
        if state is None or source is None or not state.finished:
            return
        try:
            await asyncio.shield(source.discard(state.flow_id))
        except Exception as exc:  # the outcome stands; the source's own pruning catches up
            log.warning("could not discard a finished flow's documents (%s)", type(exc).__name__)

    async def _acquire(self, flow_id: str) -> Lease:
        """Take the lease. A store may finish a take it was cancelled in (SQLite runs it on
        a thread, PostgreSQL on the server): then the lease is given back once the take
        lands, or a resume in this process would be locked out for the whole lease_ttl."""
        if self._store_never_suspends():  # no cancellation can land inside the take
            return await self.store.acquire(flow_id, self._owner, self._lease_ttl)
        take = asyncio.ensure_future(self.store.acquire(flow_id, self._owner, self._lease_ttl))
        try:
            return await asyncio.shield(take)
        except asyncio.CancelledError:
            take.add_done_callback(self._give_back)
            raise

    def _give_back(self, take: asyncio.Future[Lease]) -> None:
        if take.cancelled() or take.exception() is not None:
            return
        release = asyncio.ensure_future(self.store.release(take.result()))
        _GIVING_BACK.add(release)
        release.add_done_callback(_GIVING_BACK.discard)

    async def _release(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            # Shielded so a cancelled run still frees its flow; if that fails, the lease
            # simply expires.  A cancellation still propagates.
            with contextlib.suppress(Exception):
                if self._store_never_suspends():
                    await self.store.release(lease)
                else:
                    await asyncio.shield(self.store.release(lease))

    def __repr__(self) -> str:
        step = self._state.step.value if self._state else "new"
        return f"SignatureFlow(flow_id={self.flow_id!r}, step={step!r})"


def _result_of(state: FlowState) -> FlowResult:
    """The result of a finished flow (its evidence a copy, held as the entries' text)."""
    return FlowResult(
        flow_id=state.flow_id,
        outcome=FlowOutcome(state.outcome or "failed"),
        documents=tuple(state.downloads),
        contract=state.contract,
        generations=tuple(state.generations),
        evidence=Evidence(state.flow_id, state.evidence),
    )


@functools.lru_cache(maxsize=1)
def _sdk(version: str) -> str:
    """The evidence's name of this SDK: one string for every flow."""
    return f"qes-async {version}"


@attrs.frozen
class _NewFlow:
    flow_id: str
    client_reference: str
    mobile_number: str = attrs.field(repr=False)
    signature_id: str | None
    workflow_name: str


def _shared_options(*fields: Any) -> _Options:
    """The options, one object for all the flows that have the same (frozen, so shared
    safely): the 256 kinds used most recently are kept (a download folder per flow only
    makes the oldest go)."""
    options = _Options(*fields)
    return _OPTIONS.recent(options) or _OPTIONS.keep(options, options)


@attrs.frozen
class _Options:
    download_dir: Path
    trust_roots: tuple[bytes, ...]
    expected_signer_name: str | None
    require_valid_signature: bool
    language: str | None
    passcode_language: str | None
    deadline_warning: float
    wait_timeout: float
    outcome_grace: float


async def _record(doc: Document) -> DocumentRecord:
    path = str(doc.path) if doc.path is not None else None
    return DocumentRecord(doc.file_name, await doc.sha256(), doc.size, doc.display_name, path)


async def _documents_back(
    records: Sequence[DocumentRecord], given: Sequence[Document]
) -> list[Document]:
    by_hash = {await doc.sha256(): doc for doc in given}
    documents = []
    for record in records:
        doc = by_hash.get(record.sha256)
        if doc is None and record.path is not None:
            doc = Document.from_path(record.path, record.display_name)
        if doc is None or await doc.sha256() != record.sha256:
            raise DocumentCheckError(
                f"document {record.file_name} cannot be found again with the hash it was "
                "uploaded with",
                advice="Pass the same document to SignatureFlow.resume(documents=...).",
            )
        documents.append(doc)
    return documents


def check_download_dir(folder: Path) -> None:
    """The folder for signed PDFs exists (or is created) and takes a file (blocking).

    Checked before anything is created at the service: the signature is legally done once
    the client types the SMS code, so a folder that cannot take the files must be found
    first. A real write is tried, since permission bits say nothing when run as root or
    on a read-only mount.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".qes-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInputError(
            "download_dir",
            f"{str(folder)!r} cannot take the signed documents ({exc.strerror or exc})",
            advice="Pass a writable folder (it is created if missing).",
        ) from None
