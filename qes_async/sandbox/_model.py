"""Plain values of the sandbox: scenario knobs, timing, records, and the error it answers.

Nothing here does I/O; the status machine (``_state``) and the HTTP layer (``_server``)
share these values.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = [
    "CASE_STATUSES",
    "FLOW_KINDS",
    "LEGAL_CONDITIONS",
    "QTSPS",
    "STEPS",
    "ApiRefusal",
    "ExtractedDetails",
    "IdentityCase",
    "RequestRecord",
    "SandboxTiming",
    "Signature",
    "SmsRecord",
    "StoredDocument",
]

CASE_STATUSES = ("new", "pending", "completed", "rejected")
FLOW_KINDS = ("completed", "pending_verification")
QTSPS = ("infocert", "namirial")
#: The steps at which a scenario can make the service fail (``kyc_fail_at``).
STEPS = ("mobile", "approval", "confirmation", "verification")
#: Statuses in which the service waits for the integrator; 24 h there turns into ``error``.
WAITING_STATUSES = ("pending", "selfie_required", "user_consent_required", "confirmation_required")


def _in(options: tuple[str, ...]) -> Any:
    return attrs.validators.in_(options)


def _optional_in(options: tuple[str, ...]) -> Any:
    return attrs.validators.optional(attrs.validators.in_(options))


@attrs.frozen
class ExtractedDetails:
    """What the ID document turns out to say, once a pending identity case is verified.

    In the pending-verification flow the certificate is made from the case's details; if
    these differ from them, the signature ends in ``invalid_signature``.
    """

    first_name: str
    last_name: str
    id_document_number: str


@attrs.frozen
class IdentityCase:
    """The identity case of one client (keyed by the integrator's client reference).

    Attributes:
        first_name, last_name, id_document_number: go into the signing certificate.
        case_status: ``new``, ``pending``, ``completed`` or ``rejected``.
        risk_score: eligible from 200 to 400 inclusive (500 is refused).
        device_model: the device the identity case was made with.
        signing_device_model: the device used now; a different one asks for a selfie.
        case_age_hours: older than 24 h asks for a selfie.
        flow_kind: ``completed`` (only completed cases are eligible) or
            ``pending_verification`` (new and pending cases too).
        qtsp: ``infocert`` (the InfoCert contract is a PDF) or ``namirial`` (204).
        extracted: pending-verification flow only: the details read from the ID document;
            ``None`` means they match. A mismatch ends in ``invalid_signature``, and the
            registry then keeps the confirmed details for the re-attempt.
        kyc_fail_at: a step (``mobile``, ``approval``, ``confirmation``, ``verification``)
            whose outcome is ``kyc_required`` instead.
        error_in: a status that, once entered, turns into ``error``.
        error_recovers_after: seconds after which that error returns to the status it
            interrupted; ``None`` means it never recovers.
        verification_seconds: how long ``pending_verification`` lasts.
    """

    first_name: str = "Jane"
    last_name: str = "Doe"
    id_document_number: str = "NX1234567"
    case_status: Literal["new", "pending", "completed", "rejected"] = attrs.field(
        default="completed", validator=_in(CASE_STATUSES)
    )
    risk_score: int = 300
    device_model: str = "iPhone 15"
    signing_device_model: str | None = None
    case_age_hours: float = 1.0
    flow_kind: Literal["completed", "pending_verification"] = attrs.field(
        default="completed", validator=_in(FLOW_KINDS)
    )
    qtsp: Literal["infocert", "namirial"] = attrs.field(default="infocert", validator=_in(QTSPS))
    extracted: ExtractedDetails | None = None
    kyc_fail_at: str | None = attrs.field(default=None, validator=_optional_in(STEPS))
    error_in: str | None = attrs.field(
        default=None, validator=_optional_in((*WAITING_STATUSES[1:], "signed"))
    )
    error_recovers_after: float | None = 60.0
    verification_seconds: float = 0.0


@attrs.frozen
class SandboxTiming:
    """Every duration of the service, in seconds of the sandbox clock."""

    token_lifetime: float = 3600.0
    consent_window: float = 2 * 3600.0
    confirmation_window: float = 3600.0
    passcode_validity: float = 2 * 3600.0
    waiting_limit: float = 24 * 3600.0
    processing_delay: float = 0.0
    passcode_length: int = 6
    max_passcode_attempts: int = 3
    max_approval_attempts: int = 3


@attrs.frozen
class SmsRecord:
    """One passcode SMS the service sent."""

    signature_id: str
    mobile_number: str = attrs.field(repr=False)
    passcode: str = attrs.field(repr=False)
    sent_at: float


@attrs.frozen
class RequestRecord:
    """One API request as the sandbox saw it.

    ``route`` is the operation name (as in :class:`qes_async.Routes`) or ``None`` for a path
    that matches none; ``processed`` says whether the call changed the service's state;
    ``fault`` names the injected fault, if any; ``client_reference`` is what a
    ``create_workflow`` call asked for, read before the service judged it.
    """

    method: str
    route: str | None
    path: str
    status: int
    time: float
    signature_id: str | None
    processed: bool
    fault: str | None
    request_id: str
    #: The ``clientReference`` a ``create_workflow`` call carried (whatever its outcome).
    client_reference: str | None = None


class ApiRefusal(Exception):
    """A refusal the service answers with the contract's error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``{"code", "message", "errors", ...extra}``."""
        return {"code": self.code, "message": self.message, "errors": self.errors, **self.extra}


def bad_request(
    message: str, field: str | None = None, code: str = "invalid_request"
) -> ApiRefusal:
    """A 400 naming the offending field."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        detail["field"] = field
    return ApiRefusal(400, code, message, errors=[detail])


LEGAL_CONDITIONS: dict[str, list[dict[str, Any]]] = {
    "infocert": [
        {
            "id": "infocert-terms",
            "version": 3,
            "title": "InfoCert QTSP terms and conditions",
            "url": "https://example.org/qtsp/infocert/terms-v3",
            "text": "I accept the terms of the qualified trust service provider.",
        },
        {
            "id": "infocert-privacy",
            "version": 2,
            "title": "InfoCert privacy notice",
            "url": "https://example.org/qtsp/infocert/privacy-v2",
            "text": "I have read the privacy notice.",
        },
    ],
    "namirial": [
        {
            "id": "namirial-terms",
            "version": 5,
            "title": "Namirial QTSP terms and conditions",
            "url": "https://example.org/qtsp/namirial/terms-v5",
            "text": "I accept the terms of the qualified trust service provider.",
        }
    ],
}


@attrs.define(eq=False)
class StoredDocument:
    """A document uploaded for signing."""

    document_id: str
    file_name: str
    display_name: str
    content: bytes = attrs.field(repr=False)
    sha256: str


@attrs.define(eq=False)
class Signature:
    """One signature workflow (its id equals the workflow id)."""

    signature_id: str
    client_id: str
    client_reference: str
    verification_id: str
    case: IdentityCase
    status: str = "new"
    status_code: int | None = None
    errors: list[dict[str, Any]] = attrs.Factory(list)
    epoch: int = 0
    entered_at: float = 0.0
    processing: bool = False
    documents: list[StoredDocument] = attrs.Factory(list)
    mobile_number: str | None = attrs.field(default=None, repr=False)
    consent_deadline: float | None = None
    confirmation_deadline: float | None = None
    passcode: str | None = attrs.field(default=None, repr=False)
    passcode_sent_at: float | None = None
    wrong_passcodes: int = 0
    failed_approvals: int = 0
    spent: bool = False
    error_done: bool = False
    #: The timers armed for the current status (cancelled when it changes).
    timers: list[Any] = attrs.field(factory=list, repr=False, eq=False)

    def status_body(self, string_codes: bool = False) -> dict[str, Any]:
        """The answer of the status call (and of a webhook); ``string_codes`` sends the
        status code as a numeric string (``"1036"``), as some integrations of the service do.
        """
        code: int | str | None = self.status_code
        if string_codes and code is not None:
            code = str(code)
        return {
            "signatureId": self.signature_id,
            "status": self.status,
            "statusCode": code,
            "errors": list(self.errors),
        }
