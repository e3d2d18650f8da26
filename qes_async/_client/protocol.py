"""The pure protocol layer: build request values, read response values, map errors.

No I/O and no aiohttp here: a :class:`Request` says what to send, a :class:`Response` is what
came back (status, headers, body bytes), and the functions below turn one into the other
side's values. The transport only moves bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from .._core.errors import DecodeError, InvalidInputError, ServiceError, error_for_response
from .._core.models import (
    Attempt,
    ErrorDetail,
    SignatureDetails,
    Status,
    StatusReport,
    Workflow,
)
from .._core.redact import Scrubber
from .operations import Operation, spec
from .routes import Routes
from .transport import BodyPart

__all__ = [
    "Request",
    "Response",
    "Token",
    "approval_body",
    "build_request",
    "decode_json",
    "error_from_response",
    "parse_attempt",
    "parse_details",
    "parse_status",
    "parse_token",
    "parse_workflow",
    "status_report",
    "token_request",
]

T = TypeVar("T")
#: Shared by every JSON request (read-only: no request holds a copy of its own).
JSON_HEADERS: Mapping[str, str] = MappingProxyType({"Accept": "application/json"})
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@attrs.frozen
class Request:
    """What to send: method, route name (for logs and retries), path, and the body.

    ``idempotent`` decides whether a 5xx or a lost answer may be retried.
    """

    method: str
    operation: str
    path: str
    params: Mapping[str, str] = _NO_PARAMS
    json: Any = attrs.field(default=None, repr=False)
    parts: tuple[BodyPart, ...] = ()
    headers: Mapping[str, str] = JSON_HEADERS
    idempotent: bool = False
    authenticated: bool = True
    transfer: bool = False  # a large upload or download: bounded per read, not in total
    #: The sender's last attempt of this request, ``[token, TransportRequest, sender]``: a
    #: request sent again by the same client with the same token (a status read) is not
    #: rebuilt. Never shown.
    sent: list[Any] = attrs.field(factory=list, init=False, repr=False, eq=False)


@attrs.frozen
class Response:
    """What came back: status, headers and the body bytes.

    Headers are looked up by lower-case name: the transport hands over the answer's
    case-insensitive mapping as is; hand-made responses use lower-case keys.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = attrs.field(default=b"", repr=False)
    #: The literal secrets of the client that received it, cut from any excerpt.
    scrubber: Scrubber | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def request_id(self) -> str | None:
        """The answer's ``X-Request-Id`` when present. A server that echoes one of the
        client's secrets in it (or sends more than an id) gets it cut, since request ids
        go into logs, errors and models."""
        return request_id_of(self.headers, self.scrubber)

    def shown_body(self) -> bytes:
        """The body as an error may show it: the client's own secrets cut out."""
        return self.scrubber.body(self.body) if self.scrubber is not None else self.body


_MAX_REQUEST_ID = 128


def request_id_of(headers: Mapping[str, str], scrubber: Scrubber | None) -> str | None:
    """An answer's ``X-Request-Id``, cut to 128 characters and without the client's
    secrets (a server may echo one there)."""
    rid = headers.get("x-request-id")
    if rid is not None and (
        len(rid) > _MAX_REQUEST_ID or (scrubber is not None and scrubber.holds(rid))
    ):
        return (scrubber.text(rid) if scrubber is not None else rid)[:_MAX_REQUEST_ID]
    return rid


@attrs.frozen
class Token:
    """An access token and when it expires (POSIX seconds). Never shown in a repr."""

    value: str = attrs.field(repr=False)
    expires_at: float
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


# ------------------------------------------------------------------------------- requests


def build_request(routes: Routes, operation: Operation | str, **kw: Any) -> Request:
    """A request for an endpoint; ``signature_id`` and ``document_id`` fill the path.

    The method, whether a lost answer may be replayed, and whether it is a transfer all
    come from the operation table (:mod:`.operations`), never from here.
    """
    path_params = {"id": kw.pop("signature_id")} if "signature_id" in kw else {}
    if "document_id" in kw:
        path_params["document_id"] = kw.pop("document_id")
    op = spec(operation)
    return Request(
        method=op.method,
        operation=op.name._value_,
        path=routes.path(operation, **path_params),
        idempotent=op.replay_safe,
        authenticated=op.authenticated,
        transfer=op.transfer,
        **kw,
    )


def token_request(routes: Routes, client_id: str, client_secret: str) -> Request:
    """``POST /v1/oauth2/token`` with the client-credentials grant (retry-safe: no effect)."""
    op = spec(Operation.CREATE_TOKEN)
    return Request(
        method=op.method,
        operation=op.name._value_,
        path=routes.path(op.name),
        json={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
        headers={**JSON_HEADERS, "Cache-Control": "no-cache"},
        idempotent=op.replay_safe,
        authenticated=op.authenticated,
    )


def approval_body(details: SignatureDetails, passcode_language: str | None) -> dict[str, Any]:
    """Approve every document (with its SHA-256) and accept every legal condition."""
    missing = [d.document_id for d in details.documents if not d.sha256]
    if missing or not details.documents:
        raise InvalidInputError(
            "details",
            "lists no documents" if not missing else f"has no sha256 for {', '.join(missing)}",
            advice="Pass the SignatureDetails returned by get_signature_details unchanged.",
        )
    body: dict[str, Any] = {
        "approvedDocuments": [
            {"documentId": d.document_id, "sha256": d.sha256} for d in details.documents
        ],
        "acceptedLegalConditions": [
            {"id": c.id, "version": c.version} for c in details.legal_conditions
        ],
    }
    if passcode_language:
        body["passcodeLanguage"] = passcode_language
    return body


# ------------------------------------------------------------------------------ responses


def _undecodable(message: str, response: Response, operation: str) -> DecodeError:
    """A :class:`DecodeError` about ``response``, with its status, excerpt and request id."""
    return DecodeError(
        message,
        status=response.status,
        body=response.shown_body(),
        request_id=response.request_id,
        operation=operation,
    )


def decode_json(response: Response, operation: str) -> Any:
    """The body as JSON, or :class:`DecodeError` with an excerpt of what came instead."""
    try:
        return json.loads(response.body)  # bytes: UTF-8 (or -16/-32) is detected
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, a deep nest
        raise _undecodable("the answer is not valid JSON", response, operation) from None


def _model(response: Response, operation: str, cls: type[T], required: Sequence[str]) -> T:
    return _structured(decode_json(response, operation), response, operation, cls, required)


def _structured(
    data: Any, response: Response, operation: str, cls: type[T], required: Sequence[str]
) -> T:
    if not isinstance(data, dict) or any(data.get(k) in (None, "") for k in required):
        raise _undecodable(
            f"expected a JSON object with {', '.join(required)}", response, operation
        )
    if _has_request_id(cls):
        data = {**data, "requestId": response.request_id}  # the header's, never the body's
    try:
        value = _structure(data, cls)
    except (ValueError, TypeError) as exc:
        cause = exc.__cause__ if isinstance(exc, _ShapeError) else exc
        raise _undecodable(
            f"unexpected shape ({type(cause).__name__})", response, operation
        ) from None
    return value


class _ShapeError(ValueError):
    """cattrs' validation error, as a ValueError (its ``__cause__``)."""


def _structure(data: Any, cls: type[T]) -> T:
    """The package converter's ``structure``, loaded on first use: cattrs and the
    converter's generated code cost import time that the common status call never needs.
    """
    import cattrs

    from .._core.converter import structure

    try:
        return structure(data, cls)
    except cattrs.BaseValidationError as exc:
        raise _ShapeError(str(exc)) from exc


_WITH_REQUEST_ID: dict[type[Any], bool] = {}


def _has_request_id(cls: type[Any]) -> bool:
    known = _WITH_REQUEST_ID.get(cls)
    if known is None:
        known = _WITH_REQUEST_ID[cls] = attrs.has(cls) and "request_id" in attrs.fields_dict(cls)
    return known


def parse_workflow(response: Response) -> Workflow:
    """201 ``{"workflowId", "clientId"}``."""
    return _model(response, Operation.CREATE_WORKFLOW, Workflow, ["workflowId"])


def parse_details(response: Response) -> SignatureDetails:
    """200 signature details."""
    return _model(response, Operation.GET_SIGNATURE_DETAILS, SignatureDetails, ["signatureId"])


def parse_attempt(response: Response, operation: str) -> Attempt:
    """200 ``{"attemptId"}`` (an empty body is accepted: the id is informative only)."""
    if not response.body.strip():
        return Attempt(request_id=response.request_id)
    return _model(response, operation, Attempt, [])


_STATUSES: dict[str, Status] = {member.value: member for member in Status}


def parse_status(response: Response) -> StatusReport:
    """200 ``{"signatureId", "status", "statusCode", "errors"}``."""
    return status_report(response.status, response.headers, response.body, response.scrubber)


def status_report(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    scrubber: Scrubber | None,
    signature_id: str | None = None,
) -> StatusReport:
    """:func:`parse_status` of an answer's parts, with no :class:`Response` made for it.

    The status read is the hottest call (every waiter makes it), so the common shape (text
    id and status, an integer or null code, no errors) is built directly; anything else
    goes through the converter, which decides what is acceptable. ``signature_id``, the
    one asked about, is the report's own when the answer names it.
    """
    data = _plain_json(body)
    response = None
    if data is None:
        response = Response(status, headers, body, scrubber)
        data = decode_json(response, Operation.GET_SIGNATURE_STATUS)
    if type(data) is dict:
        sid, state, code = data.get("signatureId"), data.get("status"), data.get("statusCode")
        if (
            type(sid) is str
            and sid
            and type(state) is str
            and state
            and (code is None or type(code) is int)
            and not data.get("errors")
        ):
            known = _STATUSES.get(state)  # a dict lookup; Status() costs more per call
            rid = headers.get("x-request-id")
            if rid is not None:
                rid = request_id_of(headers, scrubber)
            if sid == signature_id:
                # The caller's string, not the one just decoded: a waiting flow holds its
                # last report, and would otherwise hold a second copy of its signature id.
                sid = signature_id
            return StatusReport(sid, known or Status(state), code, (), rid)
    return _structured(
        data,
        response or Response(status, headers, body, scrubber),
        Operation.GET_SIGNATURE_STATUS,
        StatusReport,
        ["signatureId", "status"],
    )


_DECODE = json.JSONDecoder().raw_decode


def _plain_json(body: bytes) -> Any:
    """What ``json.loads(body)`` gives for the usual answer, a UTF-8 object with nothing
    around it, at half its cost (no encoding sniffing, no whitespace scans); None for any
    other body, which :func:`decode_json` then reads (or refuses) as always."""
    if body[:1] != b"{":
        return None
    try:
        text = body.decode()
        data, end = _DECODE(text)
    except (ValueError, RecursionError):  # not UTF-8, no JSON, a nest too deep
        return None
    return data if end == len(text) else None


def parse_token(response: Response, now: float) -> Token:
    """200 token; ``token_type`` and ``expires_in`` default to Bearer and 3600 s."""
    data = decode_json(response, Operation.CREATE_TOKEN)
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise DecodeError(
            "the token answer has no access_token",
            status=response.status,
            request_id=response.request_id,
            operation=Operation.CREATE_TOKEN,
        )
    expires_in = data.get("expires_in")
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = 3600
    token_type = data.get("token_type")
    return Token(
        value=token,
        expires_at=now + float(expires_in),
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
    )


def _error_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # a nest too deep to read
        return {}
    return data if isinstance(data, dict) else {}


def _error_details(raw: Any) -> list[ErrorDetail]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, dict):
            try:
                out.append(_structure(item, ErrorDetail))
            except (ValueError, TypeError):
                continue
    return out


def error_from_response(
    response: Response, operation: str, retry_after: float | None = None
) -> ServiceError:
    """The typed :class:`ServiceError` for an error answer (lenient about the body).

    What the error shows of the body (its excerpt, ``service_message``, ``errors`` and
    ``raw``) is scrubbed: secret fields masked, the client's own secrets cut out.
    """
    scrubber = response.scrubber if response.scrubber is not None else Scrubber()
    data = scrubber.value(_error_fields(response.body))
    code = data.get("code") if isinstance(data.get("code"), str) else None
    message = data.get("message") if isinstance(data.get("message"), str) else None
    left = data.get("attemptsLeft")
    return error_for_response(
        response.status,
        code=code,
        retry_after=retry_after,
        attempts_left=left if isinstance(left, int) and not isinstance(left, bool) else None,
        service_message=message,
        request_id=response.request_id,
        body=response.shown_body(),
        errors=_error_details(data.get("errors")),
        operation=operation,
        raw=data,
    )
