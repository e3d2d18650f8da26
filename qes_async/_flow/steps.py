"""The flow's actions: each turns one machine action into client, waiter and signer calls.

Kept apart from :mod:`qes_async._flow.driver` so that each stays one concept: the flow object
(configuration, checkpoints, events) and what it does in each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._client.documents import Document
from .._client.download import PARTIAL_GLOB, write_file
from .._client.operations import Operation
from .._core.errors import (
    ConflictError,
    DocumentCheckError,
    FlowExpiredError,
    InvalidPasscodeError,
    KYCRequiredError,
    OutcomeUnknownError,
    PasscodeExpiredError,
    QESError,
    RestartLimitError,
    ServiceError,
    SignedNotSavedError,
    TooManyAttemptsError,
    UnreachableStatusError,
    WaitTimeoutError,
)
from .._core.models import SignatureDetails, Status, StatusReport, Workflow
from .._core.redact import Secret, hold, mask_phone
from .._runtime.logs import logger as log
from .._runtime.telemetry import OFF, Scope
from .._signers.signer import (
    AnswerKind,
    ConsentRequest,
    PasscodeRequest,
    SelfieRequest,
    SignerAnswer,
    SignerRequest,
)
from .._waiting.polling import read_status_until
from . import machine as fm
from .collaborators import StepContext
from .events import FlowEventKind
from .state import DownloadRecord, FlowState, Generation

if TYPE_CHECKING:
    from .pades import PadesResult

__all__ = ["StepRunner"]

T = TypeVar("T")

_MAX_RESYNCS = 5


class _Restart(Exception):
    def __init__(self, reason: fm.RestartReason) -> None:
        self.reason = reason


class StepRunner:
    """Performs the machine's actions for one run of one flow."""

    # A runner lives as long as its flow waits (hours, for 100,000 flows): no __dict__.
    __slots__ = (
        "_attempts_left",
        "_resyncs",
        "checkpoint",
        "client",
        "clock",
        "documents",
        "opts",
        "restart_policy",
        "signer",
        "state",
        "waiter",
    )

    def __init__(self, context: StepContext, state: FlowState, documents: Sequence[Document]):
        # The flow's own list is shared, not copied: neither side changes it in place.
        self.state = state
        self.documents = documents if type(documents) is list else list(documents)
        self.client = context.client
        self.waiter = context.waiter
        self.signer = context.signer
        self.opts = context.options
        self.clock = context.clock
        self.restart_policy = context.restart_policy
        self.checkpoint = context.checkpoint
        self._attempts_left: int | None = None
        self._resyncs = 0

    @property
    def gen(self) -> Generation:
        """The current generation (the state's last: a flow always has one here)."""
        return self.state.generations[-1]

    @property
    def sig(self) -> str:
        assert self.gen.signature_id is not None
        return self.gen.signature_id

    @property
    def _waiter_via(self) -> str:
        # A webhook-fed waiter re-reads the status when a webhook (or its safety poll)
        # wakes it; a polling waiter reads on its schedule.
        return "webhook" if hasattr(self.waiter, "dispatcher") else "read"

    async def _acting(self, action: str, call: Awaitable[T], **data: Any) -> T:
        """Await one call to the service and put it, with its outcome, in the evidence."""
        try:
            result = await call
        except Exception as exc:
            self.checkpoint.note("action", action=action, **data, **_failure(exc))
            raise
        self.checkpoint.note(
            "action",
            action=action,
            outcome="ok",
            attempt_id=getattr(result, "attempt_id", None),
            request_id=getattr(result, "request_id", None),
            **data,
        )
        return result

    async def perform(self, action: fm.Action) -> None:
        """Perform ``action``; failures end the flow (saved) and are raised."""
        try:
            await _PERFORMERS[action](self)
            self._resyncs = 0
        except _Restart as restart:
            await self._restart_needed(restart.reason)
        except (FlowExpiredError, PasscodeExpiredError, TooManyAttemptsError) as exc:
            reason = fm.restart_reason_for_error(exc)
            assert reason is not None
            await self._restart_needed(reason)
        except UnreachableStatusError as exc:
            await self._unreachable(exc)
        except (OutcomeUnknownError, ConflictError) as exc:
            self._resyncs += 1
            if self._resyncs > _MAX_RESYNCS:
                if isinstance(exc, OutcomeUnknownError):
                    # The network, not the signature, is in trouble: stop here but leave the
                    # flow resumable (its in-flight marker makes the next run re-read first).
                    await self.checkpoint.save()
                    raise exc
                await self._fail(exc)  # the service keeps refusing what the machine asks
            await self.resync()
        except (DocumentCheckError, WaitTimeoutError, RestartLimitError) as exc:
            await self._fail(exc)

    # ------------------------------------------------------------------- status reading

    async def resync(self) -> None:
        """Re-read the remote status and move the machine to what it asks for."""
        if self.state.step in (fm.Step.CREATE, fm.Step.RESTART) or self.state.finished:
            return
        with self.checkpoint._traced_step("resync"):
            try:
                report, via = await self._read_status(), "read"
                if report.status is Status.ERROR or not report.status.is_known:
                    self.checkpoint.note("status_observed", **_status_facts(report, via))
                    report, via = await self._wait_for(fm.ACTIONABLE), self._waiter_via
                settled = await self._settle(report)
                if settled is not report:
                    self.checkpoint.note("status_observed", **_status_facts(report, via))
                    via = self._waiter_via
                await self._observe(settled, via)
            except _Restart as restart:  # e.g. invalid_signature found on resume
                await self._restart_needed(restart.reason)
            except UnreachableStatusError as exc:
                await self._unreachable(exc)

    async def _read_status(self) -> StatusReport:
        """The status, read again after transient failures (a read timed out waiting for a
        connection, got no answer, 5xx: a GET is safe to repeat) until the step's deadline:
        the signer's window when the step has one that ends sooner, else ``wait_timeout``.
        At that deadline the flow ends as an expired step does: a new workflow for a
        passed window (as a signer who did not answer), failed with
        :class:`WaitTimeoutError` otherwise (as a wait that timed out).

        Except while a confirmation is in flight: it may have signed the workflow, which
        only the status can tell, so neither a new workflow (the client would sign twice)
        nor a failure (the signed documents would be dropped) may follow. The reads go on
        until ``wait_timeout``; then the flow stops resumable, its in-flight marker kept,
        and the next run reads the status first."""
        deadline = self.clock.time() + self.opts.wait_timeout
        signing = self.gen.in_flight == fm.Action.CONFIRM._value_
        window = None if signing else fm.WINDOW_OF_STEP.get(self.state.step)
        closes = self.gen.deadlines.get(window, deadline) if window is not None else deadline
        try:
            return await read_status_until(
                self.client,
                self.sig,
                fm.ACTIONABLE,
                clock=self.clock,
                deadline=min(closes, deadline),
            )
        except WaitTimeoutError as exc:
            if closes < deadline:
                raise _Restart(fm.RestartReason.DEADLINE_PASSED) from None
            if signing:
                await self.checkpoint.save()
                raise OutcomeUnknownError(
                    f"signature {self.sig}: a confirmation was sent and no status read "
                    f"answered for {self.opts.wait_timeout:g} s; it may have signed.",
                    operation="get_signature_status",
                    advice="Resume the flow later: it reads the status before anything else "
                    "and never confirms or starts a new workflow before it knows.",
                ) from exc
            await self._fail(exc)
            raise  # _fail raises; for the type checker

    async def _settle(self, report: StatusReport) -> StatusReport:
        # An approval or confirmation may have been sent: give its outcome time to show
        # before concluding it was never processed (and only then send it again). The
        # time counts from when it was sent: a worker taking the flow over after the dead
        # one's lease ran out has waited that long already, and the status it has just
        # read (an approval that reached the service shows as confirmation_required) is
        # then the answer, with no further wait.
        in_flight = self.gen.in_flight
        settled = fm.SETTLED.get(fm.Action(in_flight)) if in_flight in fm.SETTLED else None
        now = self.clock.time()
        sent_at = self.gen.in_flight_at if self.gen.in_flight_at is not None else now
        deadline = min(sent_at, now) + self.opts.outcome_grace
        if settled is not None and report.status is settled[0] and deadline > now:
            with (
                contextlib.suppress(WaitTimeoutError),
                self.checkpoint._traced_wait("status", settled[1]) as wait,
            ):
                report = await self.waiter.wait_for(self.sig, settled[1], deadline=deadline)
                wait.outcome(report.status._value_)
        if self.gen.in_flight in fm.SETTLED:
            self.gen.in_flight = self.gen.in_flight_at = None
        return report

    def _wait_for(self, targets: Sequence[Status]) -> Awaitable[StatusReport]:
        """The waiter's wait itself while untraced (no frame of ours: a parked flow holds
        every frame of its stack, for hours), else the wait inside its span."""
        deadline = self.clock.time() + self.opts.wait_timeout
        scope = self.checkpoint._traced_wait("status", targets)
        if scope is OFF:  # and no with block: a suspended one holds its __exit__ all along
            return self.waiter.wait_for(self.sig, targets, deadline=deadline)
        return self._traced_wait_for(scope, targets, deadline)

    async def _traced_wait_for(
        self, scope: Scope, targets: Sequence[Status], deadline: float
    ) -> StatusReport:
        with scope as wait:
            report = await self.waiter.wait_for(self.sig, targets, deadline=deadline)
            wait.outcome(report.status._value_)
        return report

    async def _observe(self, report: StatusReport, via: str) -> None:
        gen, status = self.gen, report.status
        # (an enum's ``_value_``: ``.value`` is a descriptor call, and this runs per status)
        value: str = status._value_
        self.checkpoint.note("status_observed", **_status_facts(report, via))
        if value != gen.last_status:
            self.checkpoint.emit(FlowEventKind.STATUS_CHANGED, status=value)
        gen.last_status, gen.last_status_code = value, report.status_code
        if status is Status.KYC_REQUIRED:
            raise KYCRequiredError(report)
        if status is Status.INVALID_SIGNATURE:
            raise _Restart(fm.RestartReason.INVALID_SIGNATURE)
        self.state.step = fm.on_status(self.state.step, status)
        window = fm.WINDOWS.get(self.state.step)
        if window is not None:
            gen.deadlines.setdefault(window[0], self.clock.time() + window[1])
        await self.checkpoint.save()

    async def _unreachable(self, exc: UnreachableStatusError) -> None:
        status = exc.report.status
        if isinstance(exc, KYCRequiredError) or status is Status.KYC_REQUIRED:
            await self._fail(
                exc if isinstance(exc, KYCRequiredError) else KYCRequiredError(exc.report)
            )
        elif status is Status.ERROR:
            await self._restart_needed(fm.RestartReason.ERROR_UNRECOVERED)
        else:
            try:
                await self._observe(exc.report, self._waiter_via)
            except _Restart as restart:
                await self._restart_needed(restart.reason)

    # ------------------------------------------------------------- ending and restarting

    async def _fail(self, exc: QESError) -> None:
        state = self.state
        state.outcome = "kyc_required" if isinstance(exc, KYCRequiredError) else "failed"
        state.error = {"type": type(exc).__name__, "message": str(exc)[:500]}
        if isinstance(exc, KYCRequiredError):
            state.error["status_codes"] = list(exc.status_codes)
        if self.gen.ended is None:
            self._end_generation(state.outcome)
        self.checkpoint.note(
            "finished",
            outcome=state.outcome,
            error=type(exc).__name__,
            status_codes=state.error.get("status_codes"),
        )
        state.step = fm.on_event(state.step, fm.Event.GIVE_UP)
        await self.checkpoint.save()
        self.checkpoint.emit(FlowEventKind.FINISHED, outcome=state.outcome)
        raise exc

    def _end_generation(self, why: str) -> None:
        self.gen.ended, self.gen.ended_at = why, self.clock.time()

    async def _restart_needed(self, reason: fm.RestartReason) -> None:
        allowed = self.restart_policy.allows(reason, len(self.state.generations))
        self.checkpoint.note("restart_needed", reason=reason.value, allowed=allowed)
        if not allowed:
            limit = self.restart_policy.max_restarts
            self._end_generation(reason.value)
            await self._fail(
                RestartLimitError(
                    f"flow {self.state.flow_id} needed a new workflow ({reason.value}) after "
                    f"{len(self.state.generations)} generation(s); the policy allows {limit} "
                    "restart(s) for this reason."
                )
            )
        self._end_generation(reason.value)
        self.state.step = fm.on_event(self.state.step, fm.Event.RESTART_NEEDED)
        await self.checkpoint.save()

    async def _restart(self) -> None:
        previous = self.gen
        now = self.clock.time()
        self.state.generations.append(
            Generation(number=previous.number + 1, started_at=now, reason=previous.ended)
        )
        self._attempts_left = None
        self.checkpoint.note("generation_started", number=self.gen.number, reason=previous.ended)
        self.state.step = fm.on_event(self.state.step, fm.Event.RESTARTED)
        await self.checkpoint.save()
        self.checkpoint.emit(FlowEventKind.RESTARTED, reason=previous.ended)

    async def _event(self, event: fm.Event) -> None:
        self.state.step = fm.on_event(self.state.step, event)
        await self.checkpoint.save()

    # --------------------------------------------------------------------------- actions

    async def _create_workflow(self) -> None:
        if self.gen.in_flight == "create":
            # An earlier run sent a create and stopped before its answer (a crash): it may
            # have made a workflow this flow will never know.
            await self._unconfirmed_create("the run that sent it stopped before its answer")
        self.gen.in_flight = "create"
        await self.checkpoint.save()
        create = asyncio.ensure_future(
            self.client.create_workflow(
                self.state.client_reference, workflow_name=self.state.workflow_name
            )
        )
        try:
            workflow = await asyncio.shield(create)
        except asyncio.CancelledError:
            # The request may be at the service already: let its answer land (the
            # client's timeouts bound the wait) and record the workflow, so that a
            # resume goes on with it instead of creating a second one.
            with contextlib.suppress(Exception):
                await self._created(await create)
            raise
        except Exception as exc:
            self.checkpoint.note("action", action=Operation.CREATE_WORKFLOW, **_failure(exc))
            if isinstance(exc, OutcomeUnknownError):
                self.gen.in_flight = None  # the next create is a new call, counted apart
                await self._unconfirmed_create("its answer was lost")
            raise
        await self._created(workflow)

    async def _unconfirmed_create(self, why: str) -> None:
        self.gen.unconfirmed_creates += 1
        self.checkpoint.note("create_unconfirmed", reason=why)
        await self.checkpoint.save()
        log.warning(
            "flow %s: a create_workflow got no answer (%s); a workflow may exist at the "
            "service that this flow will not use",
            self.state.flow_id,
            why,
        )
        self.checkpoint.emit(FlowEventKind.CREATE_UNCONFIRMED, reason=why)

    async def _created(self, workflow: Workflow) -> None:
        self.gen.signature_id, self.gen.in_flight = workflow.workflow_id, None
        self.checkpoint.note(
            "action",
            action=Operation.CREATE_WORKFLOW,
            outcome="ok",
            signature_id=workflow.workflow_id,
            request_id=workflow.request_id,
        )
        await self._event(fm.Event.CREATED)

    async def _wait(self) -> None:
        targets = fm.WAIT_TARGETS[self.state.step]
        if (
            self.state.step is fm.Step.AWAIT_SIGNED
            and self.gen.last_status != "pending_verification"
        ):
            # stop once at pending_verification, so progress shows it
            targets = (*targets, Status.PENDING_VERIFICATION)
        await self._observe(await self._wait_for(targets), self._waiter_via)

    async def _upload_documents(self) -> None:
        retried = self.gen.in_flight == Operation.UPLOAD_DOCUMENTS
        self.gen.in_flight = Operation.UPLOAD_DOCUMENTS
        await self.checkpoint.save()
        uploaded = [
            {"file_name": d.file_name, "sha256": d.sha256, "size": d.size}
            for d in self.state.documents
        ]
        try:
            await self._acting(
                Operation.UPLOAD_DOCUMENTS,
                self.client.upload_documents(self.sig, self.documents),
                documents=uploaded,
                retry=retried or None,
            )
        except ConflictError:
            if not retried:
                raise  # only a repeated upload may find the documents there already
        self.gen.documents_uploaded, self.gen.in_flight = True, None
        await self._event(fm.Event.DOCUMENTS_UPLOADED)

    async def _upload_mobile(self) -> None:
        await self._acting(
            Operation.UPLOAD_MOBILE_NUMBER,
            self.client.upload_mobile_number(self.sig, self.state.mobile_number),
            mobile_number=mask_phone(self.state.mobile_number),
        )
        await self._event(fm.Event.MOBILE_UPLOADED)

    async def _upload_selfie(self) -> None:
        deadline = self.gen.deadlines["selfie"]
        request = SelfieRequest(self.state.flow_id, self.sig, self.gen.number, deadline)
        jpeg = await self._ask(self.signer.selfie(request), request, "selfie")
        await self._acting(Operation.UPLOAD_SELFIE, self.client.upload_selfie(self.sig, jpeg))
        await self._ack(request, AnswerKind.ACCEPTED)
        await self._event(fm.Event.SELFIE_UPLOADED)

    async def _approve(self) -> None:
        details = await self.client.get_signature_details(self.sig, language=self.opts.language)
        self.checkpoint.note(
            "details_shown", **_details_facts(details), hashes_agree=self._agree(details)
        )
        self._check_hashes(details)
        self.gen.document_ids = [doc.document_id for doc in details.documents]
        request = ConsentRequest(
            flow_id=self.state.flow_id,
            signature_id=self.sig,
            generation=self.gen.number,
            documents=details.documents,
            legal_conditions=details.legal_conditions,
            deadline=self.gen.deadlines["consent"],
            masked_mobile_number=mask_phone(self.state.mobile_number),
            passcode=details.passcode,
        )
        approved = await self._ask(self.signer.consent(request), request, "consent")
        self.checkpoint.note(
            "consent",
            answer="approved" if approved else "declined",
            documents=[
                {"document_id": d.document_id, "file_name": d.file_name, "sha256": d.sha256}
                for d in details.documents
            ]
            if approved
            else None,
            legal_conditions_accepted=[
                {"id": c.id, "version": c.version} for c in details.legal_conditions
            ]
            if approved
            else None,
        )
        if not approved:
            await self._ack(request, AnswerKind.ACCEPTED)
            self.state.outcome = "declined"
            self._end_generation("declined")
            self.checkpoint.note("finished", outcome="declined")
            await self._event(fm.Event.DECLINED)
            self.checkpoint.emit(FlowEventKind.FINISHED, outcome="declined")
            return
        await self._unsafe("approve", request, self._send_approval(details))
        await self._event(fm.Event.APPROVED)

    async def _send_approval(self, details: SignatureDetails) -> None:
        self.gen.approvals_sent += 1
        await self._acting(
            Operation.APPROVE_DOCUMENTS,
            self.client.approve_documents(
                self.sig, details, passcode_language=self.opts.passcode_language
            ),
            documents=[d.document_id for d in details.documents],
        )

    async def _confirm(self) -> None:
        request = PasscodeRequest(
            flow_id=self.state.flow_id,
            signature_id=self.sig,
            generation=self.gen.number,
            deadline=self.gen.deadlines["confirmation"],
            masked_mobile_number=mask_phone(self.state.mobile_number),
            attempts_left=self._attempts_left,
            retry=self._attempts_left is not None,
        )
        # Held masked while the confirmation is in flight (frame locals reach error trackers),
        # and already in the signer's task: a finished task's repr shows its result.
        passcode = await self._ask(_held(self.signer.passcode, request), request, "passcode")
        try:
            await self._unsafe("confirm", request, self._send_confirmation(passcode))
        except InvalidPasscodeError as exc:
            self.gen.in_flight = None
            self._attempts_left = exc.attempts_left
            await self._ack(request, AnswerKind.WRONG_PASSCODE, exc.attempts_left)
            await self._event(fm.Event.WRONG_PASSCODE)
            return
        await self._event(fm.Event.CONFIRMED)

    async def _send_confirmation(self, passcode: Secret) -> None:
        self.gen.confirmations_sent += 1
        await self._acting(
            Operation.CONFIRM_SIGNATURE, self.client.confirm_signature(self.sig, passcode)
        )

    async def _unsafe(self, name: str, request: SignerRequest, call: Awaitable[None]) -> None:
        self.gen.in_flight, self.gen.in_flight_at = name, self.clock.time()
        try:
            await self.checkpoint.save()
            await call
        except (FlowExpiredError, PasscodeExpiredError, TooManyAttemptsError):
            self.gen.in_flight = None
            await self._ack(request, AnswerKind.EXPIRED)
            raise
        finally:
            if asyncio.iscoroutine(call):
                call.close()  # never awaited when the save failed
        self.gen.in_flight = None
        await self._ack(request, AnswerKind.ACCEPTED)

    async def _download(self) -> None:
        try:
            await self._download_all()
        except OSError as exc:
            if isinstance(exc, (QESError, ConnectionError, TimeoutError)):
                raise  # the network: the flow's own handling applies
            # This machine's disk, not the service: the signing is done, say how to fetch.
            folder = self.opts.download_dir
            reason = exc.strerror or type(exc).__name__
            raise SignedNotSavedError(self.state.flow_id, str(folder), reason) from None

    async def _download_all(self) -> None:
        if not self.gen.document_ids:
            details = await self.client.get_signature_details(self.sig)
            self.gen.document_ids = [doc.document_id for doc in details.documents]
        folder = self.opts.download_dir / self.state.flow_id
        await asyncio.to_thread(_prepare_folder, folder)
        done = {record.document_id for record in self.state.downloads}
        for document_id in self.gen.document_ids:
            if document_id not in done:
                await self._download_one(document_id, folder)
        if self.state.contract is None:
            contract = await self.client.get_infocert_contract(self.sig)
            if contract is not None:
                taken = {Path(record.path).name for record in self.state.downloads}
                name, n = f"{self.sig}-infocert-contract.pdf", 1
                while name in taken:  # never over a signed document (a server names those)
                    n += 1
                    name = f"{self.sig}-infocert-contract-{n}.pdf"
                path = folder / name
                await asyncio.to_thread(write_file, path, contract)
                digest = hashlib.sha256(contract).hexdigest()
                self.state.contract = DownloadRecord(
                    "infocert-contract", str(path), digest, len(contract)
                )
                self.checkpoint.note(
                    "contract_downloaded",
                    file_name=name,
                    path=str(path),
                    sha256=digest,
                    size=len(contract),
                )
                self.checkpoint.emit(
                    FlowEventKind.DOCUMENT_DOWNLOADED,
                    document_id="infocert-contract",
                    path=str(path),
                    sha256=digest,
                    validation="not_checked",
                )
        self.state.outcome = "signed"
        self._end_generation("signed")
        self.checkpoint.note("finished", outcome="signed")
        await self._event(fm.Event.DOWNLOADED)
        self.checkpoint.emit(FlowEventKind.FINISHED, outcome="signed")

    async def _download_one(self, document_id: str, folder: Path) -> None:
        # Names this flow recorded stay; an unrecorded copy of this document is replaced.
        keep = {Path(record.path).name for record in self.state.downloads}
        signed = await self.client.download_signed_document(
            self.sig, document_id, folder, keep=keep
        )
        check = await self._validate(Path(signed.path), signed.sha256)
        outcome, detail = check.outcome, check.detail
        record = DownloadRecord(
            document_id,
            str(signed.path),
            signed.sha256,
            signed.size,
            outcome,
            detail or None,
            check.signer,
        )
        self.state.downloads.append(record)
        self.checkpoint.note(
            "document_downloaded",
            document_id=document_id,
            file_name=Path(signed.path).name,
            path=record.path,
            sha256=signed.sha256,
            size=signed.size,
            request_id=signed.request_id,
            validation=check.as_evidence(),
        )
        await self.checkpoint.save()
        self.checkpoint.emit(
            FlowEventKind.DOCUMENT_DOWNLOADED,
            document_id=document_id,
            path=record.path,
            sha256=record.sha256,
            validation=outcome,
        )
        if self.opts.require_valid_signature and outcome != "valid":
            raise DocumentCheckError(
                f"signed document {document_id} did not validate ({outcome}: {detail})."
            )

    async def _validate(self, path: Path, sha256: str) -> PadesResult:
        from .pades import validate_pdf_once

        return await asyncio.to_thread(
            validate_pdf_once,
            path,
            sha256,
            trust_roots=self.opts.trust_roots,
            expected_name=self.opts.expected_signer_name,
        )

    # ---------------------------------------------------------------------------- helpers

    def _hashes(self, details: SignatureDetails) -> tuple[list[Any], list[Any]]:
        """(file name, SHA-256) of the documents uploaded and of those the details list."""
        uploaded = sorted((d.file_name, d.sha256) for d in self.state.documents)
        listed = sorted((d.file_name, (d.sha256 or "").lower()) for d in details.documents)
        return uploaded, listed

    def _agree(self, details: SignatureDetails) -> bool:
        uploaded, listed = self._hashes(details)
        return uploaded == listed

    def _check_hashes(self, details: SignatureDetails) -> None:
        uploaded, listed = self._hashes(details)
        if uploaded != listed:
            names = sorted({name for name, _ in set(uploaded) ^ set(listed)})
            raise DocumentCheckError(
                f"the documents to approve differ from those uploaded ({', '.join(names)}); "
                "nothing was approved."
            )

    async def _ask(self, asking: Awaitable[T], request: SignerRequest, what: str) -> T:
        """The signer's answer, or a restart when the deadline passes first."""
        clock, deadline = self.clock, request.deadline
        self.checkpoint.emit(FlowEventKind.WAITING_FOR_SIGNER, waiting_for=what, deadline=deadline)
        warn_at = max(clock.time(), deadline - self.opts.deadline_warning)
        warning = clock.call_at(
            warn_at,
            lambda: self.checkpoint.emit(
                FlowEventKind.DEADLINE_APPROACHING, waiting_for=what, deadline=deadline
            ),
        )
        with self.checkpoint._traced_wait(what) as wait:
            # The signer runs in its own task (one that ignores a cancellation cannot hold
            # the flow past its deadline); the deadline is a timer, not a second task.
            task: asyncio.Future[T] = asyncio.ensure_future(asking)
            woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def wake(_: object = None) -> None:
                if not woken.done():
                    woken.set_result(None)

            task.add_done_callback(wake)
            timer = clock.call_at(deadline, wake)
            try:
                await woken
            finally:
                warning.cancel()
                timer.cancel()
                if not task.done():
                    task.cancel()
            if task.done() and not task.cancelled() and clock.time() < deadline:
                wait.outcome("answered")
                return task.result()
            wait.outcome("expired")
        await self._ack(request, AnswerKind.EXPIRED)
        raise _Restart(fm.RestartReason.DEADLINE_PASSED)

    async def _ack(self, request: SignerRequest, kind: AnswerKind, left: int | None = None) -> None:
        try:
            await self.signer.acknowledge(request, SignerAnswer(kind, left))
        except Exception as exc:  # the signer's trouble must not break the flow
            log.warning("the signer's acknowledge() failed (%s)", type(exc).__name__)


async def _held(
    passcode: Callable[[PasscodeRequest], Awaitable[str | Secret]], request: PasscodeRequest
) -> Secret:
    """The signer's passcode, held as a :class:`Secret` by the task that waits for it.

    The signer is called inside the task, so a task cancelled before it starts leaves no
    coroutine behind that was never awaited."""
    return hold(await passcode(request))


def _status_facts(report: StatusReport, via: str) -> dict[str, Any]:
    return {
        "signature_id": report.signature_id,
        "status": report.status._value_,
        "status_code": report.status_code,
        "via": via,
        "request_id": report.request_id,
    }


def _details_facts(details: SignatureDetails) -> dict[str, Any]:
    return {
        "signature_id": details.signature_id,
        "request_id": details.request_id,
        "documents": [
            {
                "document_id": d.document_id,
                "file_name": d.file_name,
                "display_name": d.display_name,
                "sha256": d.sha256,
            }
            for d in details.documents
        ],
        "legal_conditions": [
            {
                "id": c.id,
                "version": c.version,
                "title": c.title,
                "url": c.url,
                "text_sha256": hashlib.sha256(c.text.encode("utf-8")).hexdigest()
                if c.text is not None
                else None,
            }
            for c in details.legal_conditions
        ],
    }


def _failure(exc: BaseException) -> dict[str, Any]:
    """How a call failed, as the evidence keeps it: kinds and codes, never messages."""
    if isinstance(exc, InvalidPasscodeError):
        outcome = "wrong_passcode"
    elif isinstance(exc, (FlowExpiredError, PasscodeExpiredError)):
        outcome = "expired"
    elif isinstance(exc, TooManyAttemptsError):
        outcome = "too_many_attempts"
    elif isinstance(exc, OutcomeUnknownError):
        outcome = "outcome_unknown"
    elif isinstance(exc, ServiceError):
        outcome = "refused"
    else:
        outcome = "failed"
    return {
        "outcome": outcome,
        "error": type(exc).__name__,
        "code": getattr(exc, "code", None) if isinstance(exc, ServiceError) else None,
        "http_status": getattr(exc, "status", None) if isinstance(exc, ServiceError) else None,
        "attempts_left": getattr(exc, "attempts_left", None),
        "request_id": getattr(exc, "request_id", None),
    }


def _prepare_folder(folder: Path) -> None:
    """Create the flow's download folder and remove partial files of a killed earlier run.

    The folder belongs to this flow alone, and the flow to the worker holding its lease, so
    any temp file found here was left by a worker that died mid-download.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for partial in folder.glob(PARTIAL_GLOB):
        partial.unlink(missing_ok=True)


#: How the runner performs each action of the machine (STOP is the driver's: it ends the
#: loop). Checked against Action when the module loads, so a new action cannot be missed.
_PERFORMERS: dict[fm.Action, Callable[[StepRunner], Awaitable[None]]] = {
    fm.Action.CREATE_WORKFLOW: StepRunner._create_workflow,
    fm.Action.WAIT: StepRunner._wait,
    fm.Action.UPLOAD_DOCUMENTS: StepRunner._upload_documents,
    fm.Action.UPLOAD_MOBILE: StepRunner._upload_mobile,
    fm.Action.UPLOAD_SELFIE: StepRunner._upload_selfie,
    fm.Action.APPROVE: StepRunner._approve,
    fm.Action.CONFIRM: StepRunner._confirm,
    fm.Action.DOWNLOAD: StepRunner._download,
    fm.Action.RESTART: StepRunner._restart,
}
if set(_PERFORMERS) != set(fm.Action) - {fm.Action.STOP}:  # pragma: no cover - a bug
    raise RuntimeError(f"actions without a performer: {set(fm.Action) - set(_PERFORMERS)}")
