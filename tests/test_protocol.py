"""The pure layers as table tests: retry decisions, Retry-After, error mapping, parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qes_async import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConsentIncompleteError,
    DecodeError,
    DocumentMismatchError,
    FlowExpiredError,
    InvalidInputError,
    InvalidPasscodeError,
    NotFoundError,
    PasscodeExpiredError,
    PermissionDeniedError,
    RateLimitedError,
    Routes,
    ServerError,
    ServiceError,
    SignatureDetails,
    Status,
    TooManyAttemptsError,
    UnprocessableError,
)
from qes_async._client.multipart import End, Headers, MultipartParser, PartData, PartEnd
from qes_async._client.protocol import (
    Response,
    approval_body,
    build_request,
    error_from_response,
    parse_status,
    parse_token,
    parse_workflow,
)
from qes_async._client.retry import (
    Decision,
    Failure,
    RetryPolicy,
    Verdict,
    decide,
    parse_retry_after,
)

POLICY = RetryPolicy(attempts=3, jitter=None, max_retry_after=60)
R, U, D, X, A, N = (
    Verdict.RETRY,
    Verdict.UNKNOWN,
    Verdict.DONE,
    Verdict.RAISE,
    Verdict.REAUTH,
    Verdict.NOT_SENT,
)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        # nothing was sent: retried for every call, then "not sent"
        ({"failure": Failure.NOT_SENT, "idempotent": False, "attempt": 1}, Decision(R)),
        ({"failure": Failure.NOT_SENT, "idempotent": False, "attempt": 3}, Decision(N)),
        # sent, no answer: safe calls retry, unsafe ones never
        ({"failure": Failure.NO_ANSWER, "idempotent": True, "attempt": 1}, Decision(R)),
        ({"failure": Failure.NO_ANSWER, "idempotent": True, "attempt": 3}, Decision(U)),
        ({"failure": Failure.NO_ANSWER, "idempotent": False, "attempt": 1}, Decision(U)),
        ({"status": 503, "idempotent": True, "attempt": 1}, Decision(R)),
        ({"status": 503, "idempotent": True, "attempt": 3}, Decision(X)),
        ({"status": 500, "idempotent": False, "attempt": 1}, Decision(U)),
        ({"status": 401, "idempotent": False, "attempt": 1}, Decision(A)),
        ({"status": 401, "idempotent": True, "attempt": 1, "reauthed": True}, Decision(X)),
        ({"status": 429, "idempotent": False, "attempt": 1, "retry_after": 5.0}, Decision(R, 5.0)),
        ({"status": 429, "idempotent": True, "attempt": 1, "retry_after": 61.0}, Decision(X)),
        ({"status": 429, "idempotent": True, "attempt": 3, "retry_after": 1.0}, Decision(X)),
        ({"status": 429, "idempotent": True, "attempt": 1}, Decision(X)),
        ({"status": 404, "idempotent": True, "attempt": 1}, Decision(D)),
        ({"status": 409, "idempotent": False, "attempt": 1}, Decision(D)),
        ({"status": 200, "idempotent": False, "attempt": 1}, Decision(D)),
    ],
)
def test_decide(kw: dict[str, object], expected: Decision) -> None:
    assert decide(policy=POLICY, **kw) == expected  # type: ignore[arg-type]


def test_waits_double_up_to_the_cap() -> None:
    waits = RetryPolicy(base=0.5, cap=3.0, jitter=None).waits()
    assert [next(waits) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_attempts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        (None, None),
        ("nan", None),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_767_225_600.0) == expected


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("status", "payload", "retry_after", "cls"),
    [
        (400, body(code="missing_parameter"), None, BadRequestError),
        (401, body(code="invalid_token"), None, AuthenticationError),
        (403, b"", None, PermissionDeniedError),
        (404, body(code="not_found"), None, NotFoundError),
        (409, body(code="wrong_status"), None, ConflictError),
        (409, body(code="invalid_passcode", attemptsLeft=2), None, InvalidPasscodeError),
        (422, body(code="flow_expired"), None, FlowExpiredError),
        (422, body(code="document_mismatch"), None, DocumentMismatchError),
        (422, body(code="consent_incomplete"), None, ConsentIncompleteError),
        (422, body(code="passcode_expired"), None, PasscodeExpiredError),
        (422, b"<html>oops</html>", None, UnprocessableError),
        (429, body(code="too_many_attempts"), None, TooManyAttemptsError),
        (429, b"", 30.0, RateLimitedError),
        (500, b"boom", None, ServerError),
        (502, b"", None, ServerError),
        (418, b"", None, ServiceError),
    ],
)
def test_error_mapping(status: int, payload: bytes, retry_after: float | None, cls: type) -> None:
    response = Response(status, {"x-request-id": "req-1"}, payload)
    error = error_from_response(response, "confirm_signature", retry_after)
    assert type(error) is cls
    assert error.status == status
    assert error.request_id == "req-1"
    assert error.operation == "confirm_signature"
    assert "req-1" in str(error)
    assert error.advice
    assert error.advice in str(error)


def test_error_fields_are_kept_and_secrets_scrubbed() -> None:
    payload = body(
        code="invalid_passcode",
        message="passcode wrong",
        attemptsLeft=1,
        passcode="654321",
        errors=[{"code": "x", "message": "y", "field": "passcode"}, "junk"],
    )
    error = error_from_response(Response(409, {}, payload), "confirm_signature")
    assert isinstance(error, InvalidPasscodeError)
    assert error.attempts_left == 1
    assert error.service_message == "passcode wrong"
    assert [e.code for e in error.errors] == ["x"]
    assert "654321" not in str(error)
    assert "654321" not in error.body_excerpt


def test_parse_workflow_keeps_request_id_and_ignores_unknown_fields() -> None:
    response = Response(201, {"x-request-id": "r"}, body(workflowId="w", clientId="c", x=1))
    workflow = parse_workflow(response)
    assert (workflow.workflow_id, workflow.client_id, workflow.request_id) == ("w", "c", "r")


@pytest.mark.parametrize("payload", [b"not json", b"[]", body(clientId="c"), body(workflowId=None)])
def test_parse_workflow_refuses_a_wrong_shape_with_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        parse_workflow(Response(201, {}, payload))
    assert info.value.status == 201
    assert info.value.operation == "create_workflow"


def test_parse_status_keeps_unknown_status_and_null_code() -> None:
    report = parse_status(Response(200, {}, body(signatureId="s", status="odd", statusCode=None)))
    assert report.status == Status("odd")
    assert report.status_code is None


@pytest.mark.parametrize(
    ("payload", "expires_at", "token_type"),
    [
        (body(access_token="t", token_type="Bearer", expires_in=60), 1060.0, "Bearer"),
        (body(access_token="t"), 4600.0, "Bearer"),
        (body(access_token="t", expires_in="soon", token_type=""), 4600.0, "Bearer"),
    ],
)
def test_parse_token_defaults(payload: bytes, expires_at: float, token_type: str) -> None:
    token = parse_token(Response(200, {}, payload), now=1000.0)
    assert (token.value, token.expires_at, token.token_type) == ("t", expires_at, token_type)
    assert "t'" not in repr(token)


def test_parse_token_without_access_token_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        parse_token(Response(200, {}, body(token_type="Bearer")), now=0)


def test_build_request_methods_paths_and_idempotency() -> None:
    routes = Routes()
    get = build_request(routes, "get_signature_status", signature_id="a/b")
    assert (get.method, get.path, get.idempotent) == ("GET", "/v1/signatures/a%2Fb/status", True)
    put = build_request(routes, "upload_mobile_number", signature_id="s")
    assert (put.method, put.idempotent) == ("PUT", True)
    for name in ("create_workflow", "upload_documents", "approve_documents", "confirm_signature"):
        request = build_request(
            routes, name, **({} if name == "create_workflow" else {"signature_id": "s"})
        )
        assert (request.method, request.idempotent) == ("POST", False)


def test_approval_body_needs_hashes() -> None:
    from qes_async import DocumentInfo

    details = SignatureDetails("s", documents=(DocumentInfo("d", "a.pdf"),))
    with pytest.raises(InvalidInputError, match="no sha256 for d"):
        approval_body(details, None)
    with pytest.raises(InvalidInputError, match="lists no documents"):
        approval_body(SignatureDetails("s"), None)


def test_multipart_parser_handles_split_chunks_and_preamble() -> None:
    raw = (
        b"preamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--B\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7 body\r\n--B--\r\nepilogue"
    )
    for size in (1, 3, 7, len(raw)):
        parser = MultipartParser("B")
        events = [e for i in range(0, len(raw), size) for e in parser.feed(raw[i : i + size])]
        headers = [e for e in events if isinstance(e, Headers)]
        assert [h["content-type"] for h in headers] == ["text/plain", "application/pdf"]
        data = b"".join(e for e in events if isinstance(e, PartData))
        assert data == b"hello%PDF-1.7 body"
        assert sum(isinstance(e, PartEnd) for e in events) == 2
        assert isinstance(events[-1], End)
        assert parser.done


def test_multipart_parser_is_not_done_without_closing_boundary() -> None:
    parser = MultipartParser("B")
    parser.feed(b"--B\r\n\r\ndata\r\n--B\r\n\r\nmore")
    assert not parser.done


# The status fast path must agree with the converter on every body both accept.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 7000),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["signed", "pending", "sig-1", "future_status"]),
)


@given(
    sid=_scalars,
    status=_scalars,
    code=_scalars,
    errors=st.one_of(st.none(), st.just([]), st.just([{"code": "x", "statusCode": 140}])),
)
@settings(max_examples=300, deadline=None)
def test_status_fast_path_agrees_with_the_converter(
    sid: object, status: object, code: object, errors: object
) -> None:
    from qes_async import DecodeError, StatusReport
    from qes_async._client.protocol import _structured

    body: dict[str, object] = {"signatureId": sid, "status": status, "statusCode": code}
    if errors is not None:
        body["errors"] = errors
    response = Response(200, {"x-request-id": "r-1"}, json.dumps(body).encode())

    def outcome(parse: object) -> object:
        try:
            return parse()  # type: ignore[operator]
        except DecodeError:
            return DecodeError

    fast = outcome(lambda: parse_status(response))
    slow = outcome(
        lambda: _structured(
            body, response, "get_signature_status", StatusReport, ["signatureId", "status"]
        )
    )
    assert fast == slow
    if fast is not DecodeError:
        assert fast.request_id == "r-1"  # type: ignore[attr-defined]
