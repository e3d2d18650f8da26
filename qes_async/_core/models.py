"""The SDK's data: attrs classes that know nothing about JSON (see ``_converter``).

Results carry ``request_id`` (the answer's ``X-Request-Id``) when the service sent one.
Reprs never show a passcode, a full mobile number or document bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import attrs

from .redact import mask_phone

__all__ = [
    "Attempt",
    "DocumentInfo",
    "ErrorDetail",
    "LegalCondition",
    "PasscodeInfo",
    "SignatureDetails",
    "SignedDocument",
    "Status",
    "StatusReport",
    "WebhookEvent",
    "Workflow",
]


class Status(str, enum.Enum):
    """A signature's status: an *open* enum.

    Known statuses are members; an unknown string from the service becomes a pseudo-member
    that keeps its value (``Status("new_thing").value == "new_thing"``), never an error.
    """

    NEW = "new"
    PENDING = "pending"
    KYC_REQUIRED = "kyc_required"
    SELFIE_REQUIRED = "selfie_required"
    USER_CONSENT_REQUIRED = "user_consent_required"
    CONFIRMATION_REQUIRED = "confirmation_required"
    PENDING_VERIFICATION = "pending_verification"
    SIGNED = "signed"
    INVALID_SIGNATURE = "invalid_signature"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        if not isinstance(value, str):
            return None
        pseudo = str.__new__(cls, value)
        pseudo._name_ = "UNKNOWN"
        pseudo._value_ = value
        return pseudo

    @property
    def is_known(self) -> bool:
        """True for the statuses the contract documents."""
        return self._name_ != "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True where the signature will not move on by itself."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Status({self.value!r})"


@attrs.frozen
class StatusFacts:
    """What the contract says of one status, in one place (a new status is one row).

    Attributes:
        rank: how far along the ceremony it is. The contract's transitions only move
            forward, so a read ranking below one already seen is stale; ``None`` for
            ``error``, which has no place and may return to the status it interrupted.
        terminal: the signature will not move on by itself.
    """

    rank: int | None
    terminal: bool = False


#: The facts of every documented status (a table test keeps it complete).
STATUS_FACTS: Mapping[Status, StatusFacts] = MappingProxyType(
    {
        Status.NEW: StatusFacts(0),
        Status.PENDING: StatusFacts(1),
        Status.SELFIE_REQUIRED: StatusFacts(2),
        Status.USER_CONSENT_REQUIRED: StatusFacts(3),
        Status.CONFIRMATION_REQUIRED: StatusFacts(4),
        Status.PENDING_VERIFICATION: StatusFacts(5),
        Status.SIGNED: StatusFacts(6, terminal=True),
        Status.KYC_REQUIRED: StatusFacts(6, terminal=True),
        Status.INVALID_SIGNATURE: StatusFacts(6, terminal=True),
        Status.ERROR: StatusFacts(None),
    }
)
#: Derived views of the table, for the hot paths (a waiter judges every read).
STATUS_RANK: Mapping[Status, int] = MappingProxyType(
    {s: f.rank for s, f in STATUS_FACTS.items() if f.rank is not None}
)
_TERMINAL = frozenset(s for s, f in STATUS_FACTS.items() if f.terminal)


@attrs.frozen
class ErrorDetail:
    """One entry of an ``errors`` list (error bodies, status reports, webhooks)."""

    code: str | None = None
    message: str | None = None
    field: str | None = None
    status_code: int | None = None


@attrs.frozen
class Workflow:
    """A created workflow. ``workflow_id`` is also the ``signature_id``."""

    workflow_id: str
    client_id: str | None = None
    request_id: str | None = attrs.field(default=None, eq=False)

    @property
    def signature_id(self) -> str:
        """The signature id, which equals the workflow id."""
        return self.workflow_id


@attrs.frozen
class DocumentInfo:
    """A document to sign, as the service lists it in the signature details."""

    document_id: str
    file_name: str
    display_name: str | None = None
    sha256: str | None = None


@attrs.frozen
class LegalCondition:
    """A legal condition of the trust service provider that the signer must accept."""

    id: str
    version: int | str | None = None
    title: str | None = None
    url: str | None = None
    text: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class PasscodeInfo:
    """What the SMS passcode will look like: its length and how long it stays valid."""

    length: int | None = None
    validity_seconds: int | None = None


def _masked(value: str | None) -> str:
    return repr(mask_phone(value)) if value else "None"


@attrs.frozen
class SignatureDetails:
    """What the signer must see before approving: documents, legal conditions, passcode."""

    signature_id: str
    client_id: str | None = None
    verification_id: str | None = None
    mobile_number: str | None = attrs.field(default=None, repr=_masked)
    documents: tuple[DocumentInfo, ...] = ()
    legal_conditions: tuple[LegalCondition, ...] = ()
    passcode: PasscodeInfo | None = None
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Attempt:
    """The answer to an approval or a confirmation."""

    attempt_id: str | None = None
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class StatusReport:
    """A signature's status as ``get_signature_status`` (or a webhook) reports it."""

    signature_id: str
    status: Status
    status_code: int | None = None
    errors: tuple[ErrorDetail, ...] = ()
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class WebhookEvent:
    """A webhook as received: less than a status report, and never trusted alone.

    ``received_at`` is POSIX seconds on the receiver's clock.
    """

    signature_id: str
    status: Status
    status_code: int | None = None
    errors: tuple[ErrorDetail, ...] = ()
    received_at: float = attrs.field(default=0.0, eq=False)


@attrs.frozen
class SignedDocument:
    """A signed document written to disk by ``download_signed_document``."""

    document_id: str
    path: Path
    sha256: str
    size: int
    message: str | None = None
    request_id: str | None = attrs.field(default=None, eq=False)
