"""What the flow's steps are given: a few narrow collaborators, not the whole flow.

:class:`StepContext` holds what a step may use (the client, the waiter, the signer, the
options, the clock, the restart policy, a checkpoint, the event sink and the tracing
scopes); :class:`FlowClient` is the part of :class:`~qes_async.QESClient` a flow calls,
so a fake client in a test, or a wrapper, needs only these methods.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .._core.models import Attempt, SignatureDetails, SignedDocument, StatusReport, Workflow

if TYPE_CHECKING:
    from .._client.documents import Document
    from .._core.redact import Secret
    from .._runtime.clock import Clock
    from .._runtime.telemetry import Scope
    from .._signers.signer import Signer
    from .._waiting.waiters import StatusWaiter
    from .driver import RestartPolicy, _Options
    from .events import FlowEventKind

__all__ = ["Checkpoint", "FlowClient", "StepContext"]


class FlowClient(Protocol):
    """The calls a signature flow makes (every one a :class:`~qes_async.QESClient` method)."""

    async def create_workflow(self, client_reference: str, *, workflow_name: str) -> Workflow: ...

    async def check_documents(self, documents: Sequence[Document]) -> list[Document]: ...

    async def upload_documents(self, signature_id: str, documents: Sequence[Document]) -> None: ...

    async def upload_mobile_number(
        self, signature_id: str, mobile_number: str | Secret
    ) -> None: ...

    async def upload_selfie(self, signature_id: str, jpeg: bytes) -> None: ...

    async def get_signature_details(
        self, signature_id: str, *, language: str | None = None
    ) -> SignatureDetails: ...

    async def approve_documents(
        self, signature_id: str, details: SignatureDetails, *, passcode_language: str | None = None
    ) -> Attempt: ...

    async def confirm_signature(self, signature_id: str, passcode: str | Secret) -> Attempt: ...

    async def get_signature_status(self, signature_id: str) -> StatusReport: ...

    async def download_signed_document(
        self,
        signature_id: str,
        document_id: str,
        destination: str | os.PathLike[str],
        *,
        keep: Collection[str] | None = None,
    ) -> SignedDocument: ...

    async def get_infocert_contract(self, signature_id: str) -> bytes | None: ...


class Checkpoint(Protocol):
    """Where the steps record progress: ``save`` writes the state (before any unsafe call
    is sent), ``note`` appends to the evidence saved with the next checkpoint, ``emit``
    sends one event of the current generation, and the two scopes are the spans of a step
    and of a wait while the run is traced. The flow is its own checkpoint (no object and
    no bound methods of its own per run: a parked flow would hold them all along)."""

    async def save(self) -> None: ...

    def note(self, kind: str, **data: Any) -> None: ...

    def emit(self, kind: FlowEventKind, **fields: Any) -> None: ...

    def _traced_step(self, name: str) -> Scope: ...

    def _traced_wait(self, what: str, targets: Sequence[object] = ()) -> Scope: ...


@attrs.frozen
class StepContext:
    """Everything a step may use; the flow builds one per run."""

    client: FlowClient
    waiter: StatusWaiter
    signer: Signer
    options: _Options  # the flow's options (download folder, deadlines, languages...)
    clock: Clock
    restart_policy: RestartPolicy
    checkpoint: Checkpoint
