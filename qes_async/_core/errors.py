"""One tree of errors, split by who is at fault and what to do next.

* :class:`InvalidInputError`: the request was never built; fix the input.
* :class:`RequestNotSentError`: the request never left; always safe to retry.
* :class:`OutcomeUnknownError`: the request may have reached the service; re-read the status
  before doing anything that must happen once.
* :class:`ServiceError` and its subclasses: the service answered no.
* :class:`DecodeError`: the service answered something we could not read.
* Flow-level errors (:class:`KYCRequiredError`, :class:`WaitTimeoutError`, ...) raised by the
  waiters and :class:`~qes_async.SignatureFlow`.

Every message says what the integrator should do; none carries a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .redact import excerpt as _excerpt

if TYPE_CHECKING:
    from .models import ErrorDetail, StatusReport

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConsentIncompleteError",
    "DecodeError",
    "DocumentCheckError",
    "DocumentMismatchError",
    "DocumentSourceError",
    "FlowError",
    "FlowExpiredError",
    "FlowNotFoundError",
    "InvalidInputError",
    "InvalidPasscodeError",
    "KYCRequiredError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PasscodeExpiredError",
    "PermissionDeniedError",
    "QESError",
    "RateLimitedError",
    "RequestNotSentError",
    "RestartLimitError",
    "ServerError",
    "ServiceError",
    "StaleStateError",
    "TLSError",
    "TooManyAttemptsError",
    "UnprocessableError",
    "UnreachableStatusError",
    "WaitTimeoutError",
    "error_for_response",
]


class QESError(Exception):
    """Base of every error this SDK raises."""

    advice: str = ""

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        self.message = message
        if advice is not None:
            self.advice = advice
        super().__init__(self._render())

    def _render(self) -> str:
        message = self.message.rstrip()
        if self.advice and message and message[-1] not in ".!?":
            message += "."  # what is wrong and what to do stay two sentences
        return f"{message} {self.advice}".strip()


class InvalidInputError(QESError, ValueError):
    """The input was refused before any request was sent.

    Attributes:
        field: the argument or field that was wrong.
    """

    def __init__(self, field: str, message: str, *, advice: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", advice=advice)


class RequestNotSentError(QESError, ConnectionError):
    """The request never reached the service (connection refused, DNS, TLS...).

    Always safe to retry.
    """

    advice = "Nothing reached the service; it is safe to try again."

    def __init__(self, message: str, *, operation: str = "", advice: str | None = None) -> None:
        self.operation = operation
        super().__init__(message, advice=advice)


class TLSError(RequestNotSentError):
    """The server's TLS certificate was refused, or the TLS handshake failed.

    Nothing was sent. It is never retried: a certificate does not fix itself between two
    attempts.
    """

    advice = (
        "If the server uses a private CA, pass "
        "ssl=ssl.create_default_context(cafile='/path/to/ca.pem') to QESClient; check the "
        "base URL and the system clock. Never turn verification off: the client secret and "
        "the signer's data cross this connection."
    )


class OutcomeUnknownError(QESError):
    """The request may have reached the service but no answer came back.

    For calls that must happen once (create workflow, upload documents, approve, confirm)
    re-read the signature status before acting again.
    """

    advice = (
        "The request may have been processed. Re-read the signature status "
        "(get_signature_status) before repeating it."
    )

    def __init__(self, message: str, *, operation: str = "", advice: str | None = None) -> None:
        self.operation = operation
        super().__init__(message, advice=advice)


class ServiceError(QESError):
    """The service answered with an error status.

    Attributes:
        status: the HTTP status.
        code: the service's error code, when it gave one.
        service_message: the service's own message (scrubbed).
        request_id: the ``X-Request-Id`` of the answer, when present.
        body_excerpt: a short scrubbed excerpt of the raw body.
        errors: the detailed error entries the service listed.
        operation: the SDK operation (route name) that failed.
    """

    advice = "See the service's message and code."

    def __init__(
        self,
        status: int,
        *,
        code: str | None = None,
        service_message: str | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
        errors: Sequence[ErrorDetail] = (),
        operation: str = "",
        raw: Mapping[str, Any] | None = None,
        advice: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.service_message = _excerpt(service_message) if service_message else None
        self.request_id = request_id
        self.body_excerpt = _excerpt(body)
        self.errors = tuple(errors)
        self.operation = operation
        self.raw = dict(raw) if raw else {}
        parts = [f"{operation or 'request'} failed with HTTP {status}"]
        if code:
            parts.append(f"code={code}")
        if request_id:
            parts.append(f"request_id={request_id}")
        head = " ".join(parts)
        if self.service_message:
            head += f": {self.service_message}"
        elif self.body_excerpt:
            head += f": {self.body_excerpt}"
        super().__init__(head + ".", advice=advice)


class BadRequestError(ServiceError):
    """400: the request was malformed or missed a parameter."""

    advice = "Fix the request: the service named what was wrong. Retrying as is will not help."


class AuthenticationError(ServiceError):
    """401: credentials or token refused."""

    advice = "Check client_id and client_secret and the environment (base URL) they belong to."


class PermissionDeniedError(ServiceError):
    """403: refused; authenticating again will not help."""

    advice = "This client is not allowed to do this; ask Fourthline to enable it."


class NotFoundError(ServiceError):
    """404: unknown signature id or document id, or a path the service does not serve.

    The advice tells them apart: an answer in the service's error shape (with a ``code``)
    names an unknown id; one without is a path that does not exist at this base URL.
    """

    advice = "Check the signature id; it equals the workflow id returned by create_workflow."

    def __init__(self, status: int, **kw: Any) -> None:
        if "advice" not in kw or kw["advice"] is None:
            code = kw.get("code") or ""
            if not code:
                kw["advice"] = (
                    "The service does not serve this path: check the base URL (without "
                    "/v1 at its end) and the routes; `qes-async doctor` checks both."
                )
            elif "document" in code:
                kw["advice"] = (
                    "Check the document id: get_signature_details (on the command line, "
                    "`qes-async status SIGNATURE_ID`) lists the signature's documents."
                )
        super().__init__(status, **kw)


class ConflictError(ServiceError):
    """409: the call does not fit the signature's current status."""

    advice = "Re-read the signature status and do what that status asks."


class InvalidPasscodeError(ConflictError):
    """409 ``invalid_passcode``: a wrong passcode; ``attempts_left`` tries remain."""

    def __init__(self, status: int, *, attempts_left: int | None = None, **kw: Any) -> None:
        self.attempts_left = attempts_left
        left = "an unknown number of" if attempts_left is None else str(attempts_left)
        kw.setdefault("advice", f"Ask the signer for the passcode again ({left} attempts left).")
        super().__init__(status, **kw)


class UnprocessableError(ServiceError):
    """422: a valid request that the service could not carry out."""

    advice = "The service refused this request in the signature's current state."


class FlowExpiredError(UnprocessableError):
    """422 ``flow_expired``: the approval (2 h) or confirmation (1 h) deadline passed."""

    advice = "This workflow has expired; start a new signature-only workflow."


class DocumentMismatchError(UnprocessableError):
    """422 ``document_mismatch``: a SHA-256 did not match the uploaded bytes."""

    advice = "Approve exactly the documents listed in get_signature_details, with their hashes."


class ConsentIncompleteError(UnprocessableError):
    """422 ``consent_incomplete``: a document or legal condition was left out of approval."""

    advice = "Approve every document and accept every legal condition from the details."


class PasscodeExpiredError(UnprocessableError):
    """422 ``passcode_expired``: the SMS passcode outlived its validity."""

    advice = "The passcode expired; start a new signature-only workflow."


class TooManyAttemptsError(ServiceError):
    """429 without ``Retry-After``: the per-signature attempt limit is used up."""

    advice = "This workflow is spent; start a new signature-only workflow."


class RateLimitedError(ServiceError):
    """429 with ``Retry-After``: ordinary rate limiting.

    Attributes:
        retry_after: seconds the service asked us to wait.
    """

    def __init__(self, status: int, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        kw.setdefault(
            "advice",
            f"Wait {retry_after:g} s before trying again."
            if retry_after is not None
            else "Wait before trying again.",
        )
        super().__init__(status, **kw)


class ServerError(ServiceError):
    """5xx: the service failed."""

    advice = "A server error; safe calls were retried already. Try again later."


class DecodeError(QESError):
    """The answer could not be read (malformed JSON, unexpected shape or content type).

    Attributes:
        status: the HTTP status of the answer.
        body_excerpt: a short scrubbed excerpt of the raw body.
        request_id: the ``X-Request-Id`` of the answer, when present.
    """

    advice = (
        "The service answered in a shape this SDK did not expect; if the route table was "
        "overridden check it, otherwise report the request id."
    )

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes | str | None = None,
        request_id: str | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.body_excerpt = _excerpt(body)
        self.request_id = request_id
        self.operation = operation
        where = f"{operation}: " if operation else ""
        tail = f" Body: {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(f"{where}{message}.{tail}")


# ----------------------------------------------------------------------------- flow level


class FlowError(QESError):
    """Base of the errors raised while waiting for or driving a signature flow."""


class SignedNotSavedError(FlowError):
    """The signature is done, but its documents could not be written on this machine.

    The stored flow is not finished: once the folder is fixed, resuming it downloads the
    documents again (downloads are reads, nothing is signed twice).

    Attributes:
        flow_id, folder: the flow to resume, and where its documents go.
    """

    def __init__(self, flow_id: str, folder: str, reason: str) -> None:
        self.flow_id, self.folder = flow_id, folder
        super().__init__(
            f"The signature is done, but its documents could not be saved in {folder} ({reason}).",
            advice=(
                "Fix the folder (space, permissions), then fetch them with: "
                f"qes-async resume {flow_id} --output {folder}"
            ),
        )


class WaitTimeoutError(FlowError, TimeoutError):
    """A waiter reached its deadline before the signature reached a target status.

    Attributes:
        signature_id, targets, last: the last status report seen (or None).
    """

    advice = "The deadline passed; re-read the status, and start a new workflow if it expired."

    def __init__(
        self, signature_id: str, targets: Sequence[str], last: StatusReport | None = None
    ) -> None:
        self.signature_id = signature_id
        self.targets = tuple(targets)
        self.last = last
        seen = f"; last status {last.status.value!s}" if last is not None else ""
        super().__init__(
            f"signature {signature_id} did not reach {', '.join(self.targets)} in time{seen}."
        )


class UnreachableStatusError(FlowError):
    """The signature reached a status from which the awaited one cannot follow.

    Attributes:
        report: the status report that made the target unreachable.
    """

    advice = "Handle this status: it will not change into the awaited one by itself."

    def __init__(self, report: StatusReport, targets: Sequence[str] = ()) -> None:
        self.report = report
        self.targets = tuple(targets)
        super().__init__(
            f"signature {report.signature_id} is {report.status.value}"
            f" (code {report.status_code}); cannot reach {', '.join(self.targets) or 'target'}."
        )


class KYCRequiredError(UnreachableStatusError):
    """``kyc_required``: the client failed an eligibility check.

    Attributes:
        status_codes: the service's status codes that explain why.
    """

    advice = (
        "The client is not eligible for a signature-only flow: start a new workflow that "
        "includes identity verification and QES."
    )

    def __init__(self, report: StatusReport, targets: Sequence[str] = ()) -> None:
        codes = [report.status_code] if report.status_code is not None else []
        codes += [e.status_code for e in report.errors if e.status_code is not None]
        self.status_codes = tuple(dict.fromkeys(codes))
        super().__init__(report, targets)


class DocumentCheckError(FlowError):
    """A document failed a check: hash mismatch in details, bad signed PDF, bad signature."""

    advice = "Do not use this document; nothing was approved or kept on its account."


class DocumentSourceError(DocumentCheckError):
    """A document source cannot give a flow's documents back as they were stored: one is
    missing, or its bytes no longer have the SHA-256 they were stored with.

    Attributes:
        flow_id: the flow whose documents were asked for.
        file_name: the document that failed.
    """

    advice = (
        "Restore the document as it was when the flow started, or pass it to "
        "SignatureFlow.resume(documents=...); a changed document is never uploaded."
    )

    def __init__(self, flow_id: str, file_name: str, why: str) -> None:
        self.flow_id = flow_id
        self.file_name = file_name
        super().__init__(f"flow {flow_id}: document {file_name!r} {why}")


class RestartLimitError(FlowError):
    """The flow needed more new workflows than its restart policy allows."""

    advice = "The service kept refusing; inspect the recorded generations and try later."


class StaleStateError(FlowError):
    """A flow store refused a write from a stale version or a lost lease."""

    advice = "Another worker owns this flow now; stop driving it."


class FlowNotFoundError(FlowError, KeyError):
    """No stored flow has this id."""

    advice = "Check the flow id; it is the id the flow was started with."

    def __str__(self) -> str:
        return self.message if not self.advice else f"{self.message} {self.advice}"


# ---------------------------------------------------------------------- response mapping

_BY_CODE: dict[str, type[ServiceError]] = {
    "flow_expired": FlowExpiredError,
    "document_mismatch": DocumentMismatchError,
    "consent_incomplete": ConsentIncompleteError,
    "passcode_expired": PasscodeExpiredError,
    "invalid_passcode": InvalidPasscodeError,
    "too_many_attempts": TooManyAttemptsError,
}
_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
}


def error_for_response(
    status: int,
    *,
    code: str | None = None,
    retry_after: float | None = None,
    attempts_left: int | None = None,
    **kw: Any,
) -> ServiceError:
    """Pick the typed error for an error answer (pure; used by the protocol layer)."""
    if status == 429:
        if retry_after is not None:
            return RateLimitedError(status, retry_after=retry_after, code=code, **kw)
        return TooManyAttemptsError(status, code=code, **kw)
    if status >= 500:
        return ServerError(status, code=code, **kw)
    cls = _BY_CODE.get(code or "")
    if cls is not None and status in (409, 422) and cls is not TooManyAttemptsError:
        if cls is InvalidPasscodeError:
            return InvalidPasscodeError(status, attempts_left=attempts_left, code=code, **kw)
        return cls(status, code=code, **kw)
    if status == 422 and code is None:
        # The contract: 422 includes a QES flow that has expired, even without a code.
        return UnprocessableError(status, code=code, **kw)
    return _BY_STATUS.get(status, ServiceError)(status, code=code, **kw)
