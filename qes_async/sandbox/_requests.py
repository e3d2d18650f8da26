"""Strict reading of request bodies, as the contract spells them: pure functions.

Each function takes bytes or a decoded value and returns plain Python values, or raises a
400 :class:`ApiRefusal` that names the offending field. Nothing here can raise anything
else on any input, which the property-based tests check.
"""

from __future__ import annotations

import email.message
import email.parser
import email.utils
import json
import re
from typing import Any

import attrs

from .._core.lenient import LANGUAGE_TAG
from ._model import bad_request

__all__ = [
    "FormPart",
    "parse_approval",
    "parse_confirmation",
    "parse_json_object",
    "parse_language",
    "parse_mobile_number",
    "parse_multipart",
    "parse_token_request",
    "parse_workflow",
]

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
LANGUAGE = LANGUAGE_TAG  # BCP 47, any case: en, EN and en-gb are all accepted
DEFAULT_WORKFLOW_NAMES = ("qes",)
DIGITS = re.compile(r"[0-9]{1,16}")
MAX_REFERENCE = 200


def parse_json_object(content_type: str, body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; 400 for another content type or shape."""
    if content_type != "application/json":
        raise bad_request("Content-Type must be application/json", code="invalid_content_type")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request("the body is not valid UTF-8 JSON", code="invalid_json") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    return value


def _string(obj: dict[str, Any], field: str, *, path: str | None = None) -> str:
    value = obj.get(field)
    name = path or field
    if value is None:
        raise bad_request(f"{name} is required", name, code="missing_field")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", name, code="invalid_field")
    return value


def _list_of_objects(obj: dict[str, Any], field: str) -> list[dict[str, Any]]:
    value = obj.get(field)
    if value is None:
        raise bad_request(f"{field} is required", field, code="missing_field")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad_request(f"{field} must be a list of objects", field, code="invalid_field")
    return value


def parse_token_request(body: dict[str, Any]) -> tuple[str, str, str]:
    """``grant_type``, ``client_id``, ``client_secret``."""
    return (
        _string(body, "grant_type"),
        _string(body, "client_id"),
        _string(body, "client_secret"),
    )


def parse_workflow(body: dict[str, Any], names: tuple[str, ...] = DEFAULT_WORKFLOW_NAMES) -> str:
    """The client reference of a create-workflow request.

    ``workflowName`` must be one of ``names``, compared exactly: it is an opaque name agreed
    with Fourthline, and case counts.
    """
    if _string(body, "workflowName") not in names:
        allowed = ", ".join(f'"{name}"' for name in names)
        raise bad_request(
            f"workflowName must be one of {allowed}", "workflowName", code="invalid_field"
        )
    reference = _string(body, "clientReference")
    if not reference.strip() or len(reference) > MAX_REFERENCE:
        raise bad_request(
            f"clientReference must be 1 to {MAX_REFERENCE} characters",
            "clientReference",
            code="invalid_field",
        )
    return reference


def parse_mobile_number(body: dict[str, Any]) -> str:
    """An E.164 mobile number."""
    number = _string(body, "mobileNumber")
    if not E164.fullmatch(number):
        raise bad_request(
            "mobileNumber must be in E.164 form, e.g. +31612345678",
            "mobileNumber",
            code="invalid_field",
        )
    return number


def parse_approval(body: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, int]]]:
    """Approved documents ``(documentId, sha256)`` and accepted conditions ``(id, version)``."""
    documents = []
    for i, item in enumerate(_list_of_objects(body, "approvedDocuments")):
        prefix = f"approvedDocuments[{i}]"
        doc_id = _string(item, "documentId", path=f"{prefix}.documentId")
        sha = _string(item, "sha256", path=f"{prefix}.sha256")
        if not SHA256_HEX.fullmatch(sha):
            raise bad_request(
                "sha256 must be 64 hex digits", f"{prefix}.sha256", code="invalid_field"
            )
        documents.append((doc_id, sha))
    conditions = []
    for i, item in enumerate(_list_of_objects(body, "acceptedLegalConditions")):
        prefix = f"acceptedLegalConditions[{i}]"
        cond_id = _string(item, "id", path=f"{prefix}.id")
        version = item.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise bad_request(
                "version must be an integer", f"{prefix}.version", code="invalid_field"
            )
        conditions.append((cond_id, version))
    language = body.get("passcodeLanguage")
    if language is not None and (not isinstance(language, str) or not LANGUAGE.fullmatch(language)):
        raise bad_request(
            "passcodeLanguage must be a language code such as en",
            "passcodeLanguage",
            code="invalid_field",
        )
    return documents, conditions


def parse_confirmation(body: dict[str, Any]) -> str:
    """The passcode (a string of digits)."""
    passcode = _string(body, "passcode")
    if not DIGITS.fullmatch(passcode):
        raise bad_request("passcode must be a string of digits", "passcode", code="invalid_field")
    return passcode


def parse_language(value: str | None) -> str:
    """The optional ``language`` query parameter (default ``en``)."""
    if value is None:
        return "en"
    if not LANGUAGE.fullmatch(value):
        raise bad_request("language must be a code such as en", "language", code="invalid_field")
    return value.lower()  # tags compare without regard to case


def parse_documents_metadata(raw: bytes) -> list[tuple[str, str]]:
    """The ``metadata`` part of a document upload: ``(fileName, displayName)`` pairs."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request(
            "metadata is not valid JSON", "metadata", code="invalid_multipart"
        ) from None
    if not isinstance(value, dict):
        raise bad_request("metadata must be a JSON object", "metadata", code="invalid_multipart")
    items = _list_of_objects(value, "documents")
    if not items:
        raise bad_request("at least one document is required", "documents", code="invalid_field")
    out = []
    for i, item in enumerate(items):
        name = _string(item, "fileName", path=f"documents[{i}].fileName")
        display = item.get("displayName", name)
        if not isinstance(display, str):
            raise bad_request(
                "displayName must be a string", f"documents[{i}].displayName", code="invalid_field"
            )
        out.append((name, display))
    return out


def require(condition: bool, message: str, field: str | None = None) -> None:
    """Raise a 400 ``invalid_multipart`` unless ``condition`` holds."""
    if not condition:
        raise bad_request(message, field, code="invalid_multipart")


@attrs.frozen
class FormPart:
    """One part of a multipart/form-data body."""

    name: str | None
    filename: str | None
    content_type: str
    data: bytes = attrs.field(repr=False)


def parse_multipart(content_type_header: str, body: bytes) -> list[FormPart]:
    """Split a multipart/form-data body into its parts, keeping each part's exact bytes."""
    header = email.message.Message()
    header["Content-Type"] = content_type_header
    require(header.get_content_type() == "multipart/form-data", "expected multipart/form-data")
    boundary = header.get_param("boundary")
    require(isinstance(boundary, str) and 0 < len(boundary) <= 200, "missing multipart boundary")
    assert isinstance(boundary, str)
    delimiter = b"--" + boundary.encode("latin-1", errors="replace")
    chunks = body.split(b"\r\n" + delimiter)
    require(chunks[0].startswith(delimiter), "the body does not start with the boundary")
    chunks[0] = chunks[0][len(delimiter) :]
    require(len(chunks) >= 2 and chunks[-1].startswith(b"--"), "the closing boundary is missing")
    parts = []
    for chunk in chunks[:-1]:
        require(chunk.startswith(b"\r\n"), "a part does not start on a new line")
        rest = chunk[2:]
        if rest.startswith(b"\r\n"):
            head, data = b"", rest[2:]
        else:
            head, sep, data = rest.partition(b"\r\n\r\n")
            require(bool(sep), "a part has no blank line after its headers")
        headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        parts.append(
            FormPart(
                name=_param(headers, "name"),
                filename=_param(headers, "filename"),
                content_type=headers.get_content_type() if "content-type" in headers else "",
                data=data,
            )
        )
    return parts


def _param(headers: email.message.Message, name: str) -> str | None:
    value = headers.get_param(name, header="content-disposition")
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    return value if isinstance(value, str) else None
