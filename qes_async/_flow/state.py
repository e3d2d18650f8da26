"""A flow's checkpoint: versioned, JSON-serialisable state, and its strict parser.

What is stored is what a resumed flow needs and nothing it can re-read: the step, every
generation (one workflow each) with its signature id, deadlines as absolute POSIX instants,
which unsafe call was in flight, the uploaded documents' hashes and where to read them back,
and what was downloaded.  Never a passcode.  The mobile number is stored (a resumed flow
must upload it again after a restart) but every repr masks it.

The format carries ``"format": FORMAT_VERSION``; :func:`parse_state` refuses any other value
and any unknown field, so a newer writer is never half-read by an older reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from .._core.errors import FlowError
from .._core.redact import mask_phone
from .machine import WINDOW_OF_STEP, Step

#: The steps that run against a deadline, and the name of that deadline.

__all__ = [
    "FORMAT_VERSION",
    "DocumentRecord",
    "DownloadRecord",
    "FlowState",
    "Generation",
    "StateFormatError",
    "dump_state",
    "parse_state",
]

FORMAT_VERSION = 1


class StateFormatError(FlowError, ValueError):
    """Stored flow state that this version of qes_async cannot read."""

    advice = (
        "The state was written by another version of qes_async, or damaged; resume it with "
        "the version that wrote it."
    )


@attrs.define
class DocumentRecord:
    """A document to sign, as uploaded.

    ``path`` is where a resumed flow reads it back; None means the caller must pass the
    same document again (``documents=``) to :meth:`SignatureFlow.resume`, matched by hash.
    """

    file_name: str
    sha256: str
    size: int
    display_name: str | None = None
    path: str | None = None


@attrs.define
class DownloadRecord:
    """A signed document (or the InfoCert contract) saved to disk, and how it checked out."""

    document_id: str
    path: str
    sha256: str
    size: int
    validation: str = "not_checked"  # valid | untrusted | invalid | unreadable | not_checked
    validation_detail: str | None = None
    signer: str | None = None  # the name in the signing certificate, when it was read


@attrs.define
class Generation:
    """One workflow of the flow; a restart begins the next generation.

    ``in_flight`` names an unsafe call (create, upload_documents, approve, confirm) that was
    sent but whose outcome is not recorded yet: a resumed flow re-reads the status before
    deciding whether it happened.  ``deadlines`` maps ``consent``, ``confirmation`` and
    ``selfie`` to absolute POSIX instants.
    """

    number: int
    started_at: float
    reason: str | None = None  # why this generation began (None for the first)
    signature_id: str | None = None
    in_flight: str | None = None
    # When the unsafe call in flight was marked (POSIX seconds): the time its outcome has
    # had to show in the status is counted from here, also by a worker that took over.
    in_flight_at: float | None = None
    documents_uploaded: bool = False
    document_ids: list[str] = attrs.Factory(list)  # from the details, for the downloads
    approvals_sent: int = 0
    confirmations_sent: int = 0
    # create_workflow calls whose answer never came: each may have left a workflow at the
    # service that this flow cannot know (the contract has no idempotency key, no listing).
    unconfirmed_creates: int = 0
    deadlines: dict[str, float] = attrs.Factory(dict)
    last_status: str | None = None
    last_status_code: int | None = None
    ended: str | None = None  # why it ended: signed, declined, a restart reason...
    ended_at: float | None = None


def _mask(value: str) -> str:
    return repr(mask_phone(value))


@attrs.define
class FlowState:
    """Everything a flow checkpoints.  Mutable: the driver updates it and saves it."""

    flow_id: str
    client_reference: str
    mobile_number: str = attrs.field(repr=_mask)
    documents: list[DocumentRecord]
    created_at: float
    step: Step = Step.CREATE
    generations: list[Generation] = attrs.Factory(list)
    downloads: list[DownloadRecord] = attrs.Factory(list)
    contract: DownloadRecord | None = None
    outcome: str | None = None
    error: dict[str, Any] | None = None
    updated_at: float = 0.0
    workflow_name: str = "qes"  # agreed with Fourthline; kept for restarts and resumes
    # The evidence record's entries (qes_async._flow.evidence), appended as the flow runs. New
    # in format 1 with a default, so a state stored before it still loads (with none).
    evidence: list[dict[str, Any]] = attrs.Factory(list)

    @property
    def generation(self) -> Generation:
        """The current (last) generation."""
        if not self.generations:
            raise LookupError("the flow has no generation yet")
        return self.generations[-1]

    @property
    def finished(self) -> bool:
        """True once the flow reached a terminal step."""
        return self.step.is_terminal

    def next_deadline(self) -> float | None:
        """The deadline of the window the flow is in now (consent, confirmation, selfie),
        for a sweeper; None outside those windows, or once finished. A window that has
        closed behind the flow (consent given) no longer counts."""
        window = WINDOW_OF_STEP.get(self.step)
        if window is None or not self.generations:
            return None
        return self.generation.deadlines.get(window)


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(Step, lambda value, _: Step(value))
    conv.register_unstructure_hook(Step, lambda step: step.value)
    return conv


_CONVERTER = _converter()


def dump_state(state: FlowState) -> dict[str, Any]:
    """The state as plain JSON data, with its format version."""
    data: dict[str, Any] = _CONVERTER.unstructure(state)
    return {"format": FORMAT_VERSION, **data}


def parse_state(data: Mapping[str, Any] | str | bytes) -> FlowState:
    """Read stored state strictly.

    Raises:
        StateFormatError: not JSON, an unknown format version, an unknown field, or a
            wrong shape.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise StateFormatError(f"flow state is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, Mapping):
        raise StateFormatError("flow state must be a JSON object")
    version = data.get("format")
    if version != FORMAT_VERSION:
        raise StateFormatError(
            f"flow state format {version!r} is not supported (this version reads "
            f"format {FORMAT_VERSION})."
        )
    body = {key: value for key, value in data.items() if key != "format"}
    try:
        return _CONVERTER.structure(body, FlowState)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise StateFormatError(f"flow state has a wrong shape: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))[:300]
    return f"{exc.__class__.__name__}"
