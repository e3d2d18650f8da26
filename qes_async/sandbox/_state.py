"""The QES service's status machine and rules: synchronous, no HTTP.

Calls check their preconditions and raise :class:`ApiRefusal`; what happens *afterwards*
(eligibility checks, certificate creation, verification, deadlines) runs on timers of the
injected clock, so a fake clock drives hours of service time in one ``advance``.

Status codes used (the contract lists the documented ones; the 5xxx are the sandbox's own):

=========  ====================================================================
1201       kyc_required: risk score outside 200..400
1021       kyc_required: identity case rejected
1035       kyc_required: case not completed (completed-only flow)
4110       kyc_required: a scenario's ``kyc_fail_at`` step
3311       kyc_required: identity verification failed (``kyc_fail_at="verification"``)
3105       selfie_required: identity case older than 24 h
3541       selfie_required: device model differs
5001       error: a scenario's ``error_in`` (may recover)
5002       error: 24 h in a waiting status (never recovers)
=========  ====================================================================
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from .._core.redact import mask_phone
from .._runtime.clock import Clock
from ._model import (
    LEGAL_CONDITIONS,
    WAITING_STATUSES,
    ApiRefusal,
    ExtractedDetails,
    IdentityCase,
    SandboxTiming,
    Signature,
    SmsRecord,
    StoredDocument,
)

__all__ = ["QESService"]

log = logging.getLogger("qes_async.sandbox")


class QESService:
    """The service's state: tokens, identity cases, signatures, SMS outbox.

    Args:
        clock: reads time and runs the processing/deadline timers.
        client_id, client_secret: the one API credential pair accepted.
        timing: durations (see :class:`SandboxTiming`).
        seed: makes ids and passcodes reproducible.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        client_id: str,
        client_secret: str,
        timing: SandboxTiming | None = None,
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.client_id = client_id
        self._client_secret = client_secret
        self.timing = timing or SandboxTiming()
        self._rng = random.Random(seed)
        self._tokens: dict[str, float] = {}
        self._revoked: set[str] = set()
        self.cases: dict[str, IdentityCase] = {}
        self.signatures: dict[str, Signature] = {}
        self.sms_outbox: list[SmsRecord] = []
        self.status_listeners: list[Callable[[Signature], None]] = []
        #: Send ``statusCode`` as a numeric string in status answers and webhooks.
        self.string_status_codes = False
        #: The ``workflowName`` values a create-workflow call may carry (exact match).
        self.workflow_names: tuple[str, ...] = ("qes",)

    # -- ids and tokens ---------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def issue_token(self, grant_type: str, client_id: str, client_secret: str) -> dict[str, Any]:
        """Check the client credentials and issue a bearer token."""
        if grant_type != "client_credentials":
            raise ApiRefusal(400, "unsupported_grant_type", "grant_type must be client_credentials")
        ok_id = secrets.compare_digest(client_id.encode(), self.client_id.encode())
        ok_secret = secrets.compare_digest(client_secret.encode(), self._client_secret.encode())
        if not (ok_id and ok_secret):
            raise ApiRefusal(401, "invalid_client", "unknown client id or wrong client secret")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.clock.time() + self.timing.token_lifetime
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.timing.token_lifetime),
        }

    def check_token(self, token: str | None) -> None:
        """Refuse (401) a missing, unknown, expired or revoked token."""
        if not token:
            raise ApiRefusal(401, "missing_token", "an Authorization: Bearer token is required")
        expires = self._tokens.get(token)
        if expires is None or token in self._revoked:
            raise ApiRefusal(401, "invalid_token", "the access token is unknown or revoked")
        if self.clock.time() >= expires:
            raise ApiRefusal(401, "token_expired", "the access token has expired")

    def revoke_token(self, token: str | None = None) -> None:
        """Revoke one token, or every token issued so far."""
        self._revoked.update([token] if token else self._tokens)

    # -- clients and workflows --------------------------------------------------------

    def add_client(self, client_reference: str, case: IdentityCase) -> None:
        """Register (or replace) the identity case of a client reference."""
        self.cases[client_reference] = case

    def _client_id_for(self, reference: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qes-sandbox-client:{reference}"))

    def create_workflow(self, client_reference: str) -> Signature:
        """Start a workflow; eligibility is decided after the processing delay."""
        case = self.cases.setdefault(client_reference, IdentityCase())
        sig = Signature(
            signature_id=self._uuid(),
            client_id=self._client_id_for(client_reference),
            client_reference=client_reference,
            verification_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"qes-verify:{client_reference}")),
            case=case,
            entered_at=self.clock.time(),
        )
        self.signatures[sig.signature_id] = sig
        self._emit(sig)
        self._process(sig, lambda: self._decide_eligibility(sig))
        return sig

    def _decide_eligibility(self, sig: Signature) -> None:
        case = sig.case
        if not 200 <= case.risk_score <= 400:
            self._enter(sig, "kyc_required", 1201, "risk score not accepted")
        elif case.case_status == "rejected":
            self._enter(sig, "kyc_required", 1021, "identity case rejected")
        elif case.case_status != "completed" and case.flow_kind == "completed":
            self._enter(sig, "kyc_required", 1035, "identity case not completed")
        else:
            self._enter(sig, "pending")

    # -- lookup and preconditions -----------------------------------------------------

    def get(self, signature_id: str) -> Signature:
        """The signature, with deadlines applied; 404 if unknown."""
        sig = self.signatures.get(signature_id)
        if sig is None:
            raise ApiRefusal(404, "signature_not_found", "no signature with this id")
        self._check_waiting_limit(sig)
        return sig

    def _require(self, sig: Signature, *statuses: str) -> None:
        if sig.spent:
            raise ApiRefusal(
                429, "too_many_attempts", "the attempt limit is used up; start a new workflow"
            )
        if sig.status not in statuses or sig.processing:
            busy = " (still processing the previous call)" if sig.processing else ""
            raise ApiRefusal(
                409,
                "invalid_status",
                f"not allowed in status {sig.status}{busy}; expected {' or '.join(statuses)}",
                extra={"status": sig.status},
            )

    def _check_deadline(self, deadline: float | None, what: str) -> None:
        if deadline is not None and self.clock.time() >= deadline:
            raise ApiRefusal(
                422,
                "flow_expired",
                f"the {what} deadline has passed; start a new signature-only workflow",
            )

    # -- the ceremony -----------------------------------------------------------------

    def upload_documents(self, signature_id: str, docs: list[tuple[str, str, bytes]]) -> None:
        """Store the documents (replacing earlier ones); the status stays ``pending``."""
        sig = self.get(signature_id)
        self._require(sig, "pending")
        sig.documents = [
            StoredDocument(
                self._uuid(), name, display, content, hashlib.sha256(content).hexdigest()
            )
            for name, display, content in docs
        ]

    def upload_mobile_number(self, signature_id: str, number: str) -> None:
        """Store the number; the service then asks for consent, a selfie or KYC."""
        sig = self.get(signature_id)
        self._require(sig, "pending")
        if not sig.documents:
            raise ApiRefusal(409, "documents_missing", "upload the documents first")
        sig.mobile_number = number
        self._process(sig, lambda: self._after_mobile(sig))

    def _after_mobile(self, sig: Signature) -> None:
        case = sig.case
        if case.kyc_fail_at == "mobile":
            self._enter(sig, "kyc_required", 4110, "eligibility check failed")
        elif case.case_age_hours > 24:
            self._enter(sig, "selfie_required", 3105, "identity case older than 24 hours")
        elif case.signing_device_model not in (None, case.device_model):
            self._enter(sig, "selfie_required", 3541, "device model differs")
        else:
            self._enter(sig, "user_consent_required")

    def upload_selfie(self, signature_id: str) -> None:
        """Accept the selfie; the documents then await consent."""
        sig = self.get(signature_id)
        self._require(sig, "selfie_required")
        self._process(sig, lambda: self._enter(sig, "user_consent_required"))

    def details(self, signature_id: str) -> dict[str, Any]:
        """Documents, legal conditions and passcode details to show the client."""
        sig = self.get(signature_id)
        if sig.status == "user_consent_required":
            self._check_deadline(sig.consent_deadline, "approval (2 h)")
        allowed = ("user_consent_required", "confirmation_required", "pending_verification")
        if sig.status not in (*allowed, "signed"):
            raise ApiRefusal(
                409,
                "invalid_status",
                f"no details in status {sig.status}; upload the documents and mobile number",
                extra={"status": sig.status},
            )
        return {
            "signatureId": sig.signature_id,
            "clientId": sig.client_id,
            "verificationId": sig.verification_id,
            "mobileNumber": sig.mobile_number,
            "documents": [
                {
                    "documentId": d.document_id,
                    "fileName": d.file_name,
                    "displayName": d.display_name,
                    "sha256": d.sha256,
                }
                for d in sig.documents
            ],
            "legalConditions": [dict(c) for c in LEGAL_CONDITIONS[sig.case.qtsp]],
            "passcode": {
                "length": self.timing.passcode_length,
                "validitySeconds": int(self.timing.passcode_validity),
            },
        }

    def approve(
        self,
        signature_id: str,
        approved: list[tuple[str, str]],
        accepted: list[tuple[str, int]],
    ) -> str:
        """Check the consent; the QTSP then makes the certificate and sends the SMS."""
        sig = self.get(signature_id)
        self._require(sig, "user_consent_required")
        self._check_deadline(sig.consent_deadline, "approval (2 h)")
        try:
            self._check_consent(sig, approved, accepted)
        except ApiRefusal:
            sig.failed_approvals += 1
            if sig.failed_approvals >= self.timing.max_approval_attempts:
                sig.spent = True
                raise ApiRefusal(
                    429, "too_many_attempts", "too many failed approvals; start a new workflow"
                ) from None
            raise
        self._process(sig, lambda: self._after_approval(sig))
        return self._uuid()

    @staticmethod
    def _check_consent(
        sig: Signature, approved: list[tuple[str, str]], accepted: list[tuple[str, int]]
    ) -> None:
        hashes = {d.document_id: d.sha256 for d in sig.documents}
        for doc_id, sha in approved:
            if hashes.get(doc_id) != sha.lower():
                raise ApiRefusal(
                    422,
                    "document_mismatch",
                    "an approved document is unknown or its sha256 does not match the upload",
                    errors=[
                        {
                            "code": "document_mismatch",
                            "message": doc_id,
                            "field": "approvedDocuments",
                        }
                    ],
                )
        missing = sorted(set(hashes) - {doc_id for doc_id, _ in approved})
        conditions = {(c["id"], c["version"]) for c in LEGAL_CONDITIONS[sig.case.qtsp]}
        missing_conditions = sorted(conditions - set(accepted))
        if missing or missing_conditions:
            raise ApiRefusal(
                422,
                "consent_incomplete",
                "every document and every legal condition must be approved",
                errors=[
                    {"code": "missing_document", "message": m, "field": "approvedDocuments"}
                    for m in missing
                ]
                + [
                    {
                        "code": "missing_condition",
                        "message": f"{i} v{v}",
                        "field": "acceptedLegalConditions",
                    }
                    for i, v in missing_conditions
                ],
            )

    def _after_approval(self, sig: Signature) -> None:
        if sig.case.kyc_fail_at == "approval":
            self._enter(sig, "kyc_required", 4110, "eligibility check failed")
        else:
            self._enter(sig, "confirmation_required")

    def confirm(self, signature_id: str, passcode: str) -> str:
        """Check the passcode; the documents are then signed (or verified first)."""
        sig = self.get(signature_id)
        self._require(sig, "confirmation_required")
        now = self.clock.time()
        sent = sig.passcode_sent_at or now
        if now >= sent + self.timing.passcode_validity:
            raise ApiRefusal(422, "passcode_expired", "the passcode has expired")
        self._check_deadline(sig.confirmation_deadline, "confirmation (1 h)")
        if not secrets.compare_digest(passcode.encode(), (sig.passcode or "").encode()):
            sig.wrong_passcodes += 1
            left = self.timing.max_passcode_attempts - sig.wrong_passcodes
            if left <= 0:
                sig.spent = True
                raise ApiRefusal(
                    429, "too_many_attempts", "too many wrong passcodes; start a new workflow"
                )
            raise ApiRefusal(
                409, "invalid_passcode", "the passcode is wrong", extra={"attemptsLeft": left}
            )
        self._process(sig, lambda: self._after_confirmation(sig))
        return self._uuid()

    def _after_confirmation(self, sig: Signature) -> None:
        case = sig.case
        if case.kyc_fail_at == "confirmation":
            self._enter(sig, "kyc_required", 4110, "eligibility check failed")
        elif case.flow_kind == "pending_verification" and case.case_status in ("new", "pending"):
            self._enter(sig, "pending_verification")
            self._later(sig, case.verification_seconds, lambda: self._after_verification(sig))
        else:
            self._enter(sig, "signed")

    def _after_verification(self, sig: Signature) -> None:
        case = sig.case
        real = case.extracted or ExtractedDetails(
            case.first_name, case.last_name, case.id_document_number
        )
        confirmed = attrs.evolve(
            case,
            first_name=real.first_name,
            last_name=real.last_name,
            id_document_number=real.id_document_number,
            case_status="completed",
            extracted=None,
        )
        if case.kyc_fail_at == "verification":
            self._enter(sig, "kyc_required", 3311, "identity verification failed")
            return
        self.cases[sig.client_reference] = confirmed
        if case.extracted is not None and case.extracted != ExtractedDetails(
            case.first_name, case.last_name, case.id_document_number
        ):
            self._enter(sig, "invalid_signature")
        else:
            self._enter(sig, "signed")

    def signed_document(
        self, signature_id: str, document_id: str
    ) -> tuple[Signature, StoredDocument]:
        """The signature and the document to sign for a download (only when signed)."""
        sig = self.get(signature_id)
        self._require(sig, "signed")
        for doc in sig.documents:
            if doc.document_id == document_id:
                return sig, doc
        raise ApiRefusal(404, "document_not_found", "no document with this id in the signature")

    def infocert_contract(self, signature_id: str) -> Signature:
        """The signature whose InfoCert contract is asked for (only when signed)."""
        sig = self.get(signature_id)
        self._require(sig, "signed")
        return sig

    # -- status changes, processing and deadlines ---------------------------------------

    def _process(self, sig: Signature, action: Callable[[], None]) -> None:
        """Run ``action`` after the processing delay, unless the status moved meanwhile."""
        sig.processing = True
        epoch = sig.epoch

        def run() -> None:
            sig.processing = False
            if sig.epoch == epoch:
                action()

        self.clock.call_at(self.clock.time() + self.timing.processing_delay, run)

    def _later(self, sig: Signature, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` after ``delay`` clock seconds if the status has not moved since."""
        epoch = sig.epoch

        def run() -> None:
            if sig.epoch == epoch:
                action()

        sig.timers.append(self.clock.call_at(self.clock.time() + delay, run))

    def _enter(self, sig: Signature, status: str, code: int | None = None, why: str = "") -> None:
        """Change status, arm its deadlines, tell the listeners (webhooks)."""
        now = self.clock.time()
        sig.status, sig.status_code, sig.entered_at = status, code, now
        sig.errors = [{"code": str(code), "message": why}] if code is not None and why else []
        sig.epoch += 1
        sig.processing = False
        # Timers of the previous status would do nothing now (their epoch is gone), but a
        # day-long waiting limit would hold the signature, documents and all, that long.
        for timer in sig.timers:
            timer.cancel()
        sig.timers.clear()
        log.info("signature %s -> %s (code %s)", sig.signature_id, status, code)
        if status == "user_consent_required" and sig.consent_deadline is None:
            sig.consent_deadline = now + self.timing.consent_window
        if status == "confirmation_required" and sig.passcode is None:
            sig.confirmation_deadline = now + self.timing.confirmation_window
            self._send_passcode(sig)
        if status in WAITING_STATUSES:
            self._later(sig, self.timing.waiting_limit, lambda: self._check_waiting_limit(sig))
        self._emit(sig)
        if sig.case.error_in == status and not sig.error_done:
            self._process(sig, lambda: self._interrupt(sig, status))

    def _interrupt(self, sig: Signature, resume: str) -> None:
        sig.error_done = True
        self._enter(sig, "error", 5001, "temporary processing error")
        after = sig.case.error_recovers_after
        if after is not None:
            self._later(sig, after, lambda: self._enter(sig, resume))

    def _check_waiting_limit(self, sig: Signature) -> None:
        if sig.status in WAITING_STATUSES and (
            self.clock.time() >= sig.entered_at + self.timing.waiting_limit
        ):
            self._enter(sig, "error", 5002, "no progress within 24 hours")

    def _send_passcode(self, sig: Signature) -> None:
        digits = self.timing.passcode_length
        sig.passcode = f"{self._rng.randrange(10**digits):0{digits}d}"
        sig.passcode_sent_at = self.clock.time()
        sig.wrong_passcodes = 0
        self.sms_outbox.append(
            SmsRecord(sig.signature_id, sig.mobile_number or "", sig.passcode, sig.passcode_sent_at)
        )
        log.info("passcode SMS sent to %s for %s", mask_phone(sig.mobile_number), sig.signature_id)

    def _emit(self, sig: Signature) -> None:
        for listener in list(self.status_listeners):
            listener(sig)
