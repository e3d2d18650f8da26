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
from collections.abc import Iterator, Mapping, MutableSequence
from typing import Any

import attrs
import cattrs

from .._core.errors import FlowError
from .._core.redact import mask_phone
from .evidence import EvidenceEntries
from .machine import WINDOW_OF_STEP, Step

#: The steps that run against a deadline, and the name of that deadline.

__all__ = [
    "FORMAT_VERSION",
    "DocumentRecord",
    "DownloadRecord",
    "EncodedState",
    "FlowState",
    "Generation",
    "StateEncoder",
    "StateFormatError",
    "StateText",
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
    # in format 1 with a default, so a state stored before it still loads (with none). Held
    # as their checkpoint text (EvidenceEntries), read as a list of dicts.
    evidence: MutableSequence[dict[str, Any]] = attrs.Factory(EvidenceEntries)

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
    # The entries are checked as the list of objects they are stored as, then held as text.
    conv.register_structure_hook_func(
        lambda kind: kind == _ENTRIES,
        lambda value, _: EvidenceEntries(conv.structure(value, list[dict[str, Any]])),
    )
    return conv


_ENTRIES = MutableSequence[dict[str, Any]]


_CONVERTER = _converter()


def dump_state(state: FlowState) -> dict[str, Any]:
    """The state as plain JSON data, with its format version (through cattrs: the
    reference that :func:`fast_dump` is tested against)."""
    data: dict[str, Any] = _CONVERTER.unstructure(state)
    return {"format": FORMAT_VERSION, **data}


# The checkpoint's hot path: a flow saves its state at every step, so the state is built
# by hand here rather than by cattrs' generic unstructuring. tests/test_state_encoding.py
# checks fast_dump against dump_state field by field, so a field added to a record and not
# here fails there.


def _document(d: DocumentRecord) -> dict[str, Any]:
    return {
        "file_name": d.file_name,
        "sha256": d.sha256,
        "size": d.size,
        "display_name": d.display_name,
        "path": d.path,
    }


def _download(d: DownloadRecord) -> dict[str, Any]:
    return {
        "document_id": d.document_id,
        "path": d.path,
        "sha256": d.sha256,
        "size": d.size,
        "validation": d.validation,
        "validation_detail": d.validation_detail,
        "signer": d.signer,
    }


def _generation(g: Generation) -> dict[str, Any]:
    return {
        "number": g.number,
        "started_at": g.started_at,
        "reason": g.reason,
        "signature_id": g.signature_id,
        "in_flight": g.in_flight,
        "in_flight_at": g.in_flight_at,
        "documents_uploaded": g.documents_uploaded,
        "document_ids": list(g.document_ids),
        "approvals_sent": g.approvals_sent,
        "confirmations_sent": g.confirmations_sent,
        "unconfirmed_creates": g.unconfirmed_creates,
        "deadlines": dict(g.deadlines),
        "last_status": g.last_status,
        "last_status_code": g.last_status_code,
        "ended": g.ended,
        "ended_at": g.ended_at,
    }


def _before(state: FlowState) -> dict[str, Any]:
    """The state's keys that sort before ``"evidence"``."""
    return {
        "client_reference": state.client_reference,
        "contract": None if state.contract is None else _download(state.contract),
        "created_at": state.created_at,
        "documents": [_document(d) for d in state.documents],
        "downloads": [_download(d) for d in state.downloads],
        "error": _copy(state.error),
    }


def _after(state: FlowState) -> dict[str, Any]:
    """The state's keys that sort after ``"evidence"`` (the format among them)."""
    return {
        "flow_id": state.flow_id,
        "format": FORMAT_VERSION,
        "generations": [_generation(g) for g in state.generations],
        "mobile_number": state.mobile_number,
        "outcome": state.outcome,
        "step": state.step.value,
        "updated_at": state.updated_at,
        "workflow_name": state.workflow_name,
    }


def _copy(value: Any) -> Any:
    """A copy of plain JSON data (dicts and lists copied, the rest shared)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def fast_dump(state: FlowState) -> dict[str, Any]:
    """What :func:`dump_state` returns, built by hand (no cattrs): a fresh dict that
    shares no mutable part with ``state``."""
    evidence = [_copy(e) for e in state.evidence]
    return {**_before(state), "evidence": evidence, **_after(state)}


class EncodedState(dict[str, Any]):
    """A checkpoint's JSON data that knows its own text already: the two stores of
    qes_async write ``text`` as it is instead of encoding the data again. Any other store
    sees a plain dict."""

    __slots__ = ("text",)

    def __init__(self, data: dict[str, Any], text: str) -> None:
        super().__init__(data)
        self.text = text


_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


class StateText(Mapping[str, Any]):
    """A checkpoint as its JSON text only, for a store that writes the text and never reads
    the data: one that declares ``_checkpoint_text = True`` in its own class body (a
    subclass that does not declare it again gets an :class:`EncodedState`, so a subclass
    overriding ``save`` to read the data keeps a plain dict). Read as a mapping anyway, it
    decodes its text on first use."""

    __slots__ = ("_data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.text)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:  # never the text: it holds the mobile number
        return f"StateText({len(self.text)} characters)"


def wants_text(store: object) -> bool:
    """Whether ``store``'s own class declares that it only writes a checkpoint's text."""
    return type(store).__dict__.get("_checkpoint_text") is True


# The checkpoint's text written straight from the records, with no dict or list built only
# to be encoded: each value is spelled as the reference encoder (``_ENCODE``) spells it,
# and anything but the plain types a flow stores (None, bool, int, float, str) is handed to
# that encoder itself. Keys are written in sorted order. tests/test_state_encoding.py holds
# it to ``_ENCODE(dump_state(state))`` for any state.

_str = json.encoder.encode_basestring_ascii  # what _ENCODE (ensure_ascii) writes for a str
_float = float.__repr__
_int = int.__repr__


def _v(value: Any) -> str:
    """One value as ``_ENCODE`` writes it."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return _str(value)
    if kind is float and value - value == 0.0:  # finite (_ENCODE refuses the others)
        return _float(value)
    if kind is int:
        return _int(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _ENCODE(value)


def _document_text(d: DocumentRecord) -> str:
    return (
        f'{{"display_name":{_v(d.display_name)},"file_name":{_v(d.file_name)},'
        f'"path":{_v(d.path)},"sha256":{_v(d.sha256)},"size":{_v(d.size)}}}'
    )


def _download_text(d: DownloadRecord) -> str:
    return (
        f'{{"document_id":{_v(d.document_id)},"path":{_v(d.path)},"sha256":{_v(d.sha256)},'
        f'"signer":{_v(d.signer)},"size":{_v(d.size)},"validation":{_v(d.validation)},'
        f'"validation_detail":{_v(d.validation_detail)}}}'
    )


def _ids_text(ids: Any) -> str:
    if not ids:
        return "[]"
    if type(ids) is list and all(type(i) is str for i in ids):
        return f"[{','.join([_str(i) for i in ids])}]"
    return _ENCODE(list(ids))


def _deadlines_text(deadlines: Any) -> str:
    if not deadlines:
        return "{}"
    if type(deadlines) is dict and all(type(k) is str for k in deadlines):
        pairs = [f"{_str(k)}:{_v(deadlines[k])}" for k in sorted(deadlines)]
        return f"{{{','.join(pairs)}}}"
    return _ENCODE(dict(deadlines))


def _generation_text(g: Generation) -> str:
    return (
        f'{{"approvals_sent":{_v(g.approvals_sent)},'
        f'"confirmations_sent":{_v(g.confirmations_sent)},'
        f'"deadlines":{_deadlines_text(g.deadlines)},'
        f'"document_ids":{_ids_text(g.document_ids)},'
        f'"documents_uploaded":{_v(g.documents_uploaded)},'
        f'"ended":{_v(g.ended)},"ended_at":{_v(g.ended_at)},'
        f'"in_flight":{_v(g.in_flight)},"in_flight_at":{_v(g.in_flight_at)},'
        f'"last_status":{_v(g.last_status)},"last_status_code":{_v(g.last_status_code)},'
        f'"number":{_v(g.number)},"reason":{_v(g.reason)},'
        f'"signature_id":{_v(g.signature_id)},"started_at":{_v(g.started_at)},'
        f'"unconfirmed_creates":{_v(g.unconfirmed_creates)}}}'
    )


def _records_text(records: Any, one: Any) -> str:
    return f"[{','.join([one(r) for r in records])}]"


def _head_text(state: FlowState) -> str:
    """The text up to the evidence entries (the keys that sort before ``"evidence"``)."""
    contract = state.contract
    error = state.error
    return (
        f'{{"client_reference":{_v(state.client_reference)},'
        f'"contract":{"null" if contract is None else _download_text(contract)},'
        f'"created_at":{_v(state.created_at)},'
        f'"documents":{_records_text(state.documents, _document_text)},'
        f'"downloads":{_records_text(state.downloads, _download_text)},'
        f'"error":{"null" if error is None else _ENCODE(error)},"evidence":['
    )


def _tail_text(state: FlowState) -> str:
    """The text after the evidence entries (the keys that sort after ``"evidence"``)."""
    return (
        f'],"flow_id":{_v(state.flow_id)},"format":{FORMAT_VERSION},'
        f'"generations":{_records_text(state.generations, _generation_text)},'
        f'"mobile_number":{_v(state.mobile_number)},"outcome":{_v(state.outcome)},'
        f'"step":{_v(state.step._value_)},"updated_at":{_v(state.updated_at)},'
        f'"workflow_name":{_v(state.workflow_name)}}}'
    )


class StateEncoder:
    """Encodes one flow's successive checkpoints, each evidence entry only once.

    A flow state's entries (:class:`~.evidence.EvidenceEntries`) are held as their
    checkpoint text already: a checkpoint splices that text in, and the entries are then
    held as the part of the new checkpoint's text that spells them (which the in-memory
    store holds anyway: no copy of it is kept). Entries in a plain list (one assigned to
    the state) are encoded at each checkpoint. The text is exactly
    ``json.dumps(fast_dump(state), separators=(",", ":"), sort_keys=True)``: the keys
    before ``"evidence"`` and after it are encoded as two objects and joined around it.
    """

    __slots__ = ()

    def _evidence(self, evidence: MutableSequence[dict[str, Any]]) -> str:
        """The evidence entries' text."""
        if type(evidence) is EvidenceEntries:
            joined = evidence.joined()
        else:
            joined = ",".join([_ENCODE(entry) for entry in evidence])
        return joined

    @staticmethod
    def _remember(
        evidence: MutableSequence[dict[str, Any]], text: str, start: int, end: int
    ) -> None:
        if type(evidence) is EvidenceEntries:
            evidence.rebase(text, start, end)

    def checkpoint(self, state: FlowState, store: object) -> EncodedState | StateText:
        """The checkpoint to hand ``store``: its text alone if the store declares that it
        only writes the text (see :class:`StateText`), else the data with its text."""
        if wants_text(store):
            return StateText(self.text(state))
        return self.encode(state)

    def text(self, state: FlowState) -> str:
        """The checkpoint's text, written from the records (no data built): the same text
        as :meth:`encode`'s."""
        evidence = state.evidence
        joined = self._evidence(evidence)
        head = _head_text(state)
        text = f"{head}{joined}{_tail_text(state)}"
        self._remember(evidence, text, len(head), len(head) + len(joined))
        return text

    def encode(self, state: FlowState) -> EncodedState:
        """The checkpoint's data (a fresh dict, its evidence entries shared) and its text."""
        evidence = state.evidence
        joined = self._evidence(evidence)
        before, after = _before(state), _after(state)
        head = f'{_ENCODE(before)[:-1]},"evidence":['
        text = f"{head}{joined}],{_ENCODE(after)[1:]}"
        self._remember(evidence, text, len(head), len(head) + len(joined))
        # The list is the checkpoint's own (entries held as text decode as fresh dicts; a
        # plain list's are shared, as they are never changed once chained).
        data = EncodedState(before, text)
        data["evidence"] = list(evidence)
        data.update(after)
        return data


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
