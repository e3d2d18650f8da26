"""The one table of the API's operations: name, method, path, retry safety, answers.

Every layer reads this table and nothing else: :class:`~qes_async.Routes` takes its default
paths and placeholders from it, the protocol layer its method and whether a lost answer may
be replayed, the retry decision that flag, the sandbox's router its method and path, and
``qes-async doctor`` its probes. Adding an endpoint is one entry here, one client method and
one sandbox handler; making one route replay-safe (or not) is a change of one field.

Pure data: no I/O, no asyncio, no aiohttp.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import attrs

__all__ = ["OPERATIONS", "Operation", "OperationSpec", "spec"]


class Operation(str, enum.Enum):
    """The API's operations, in the order of the contract. Each value is the name used in
    route files, logs, telemetry and errors."""

    CREATE_TOKEN = "create_token"  # noqa: S105 - an operation name, not a password
    CREATE_WORKFLOW = "create_workflow"
    UPLOAD_DOCUMENTS = "upload_documents"
    UPLOAD_MOBILE_NUMBER = "upload_mobile_number"
    UPLOAD_SELFIE = "upload_selfie"
    GET_SIGNATURE_DETAILS = "get_signature_details"
    APPROVE_DOCUMENTS = "approve_documents"
    CONFIRM_SIGNATURE = "confirm_signature"
    GET_SIGNATURE_STATUS = "get_signature_status"
    DOWNLOAD_SIGNED_DOCUMENT = "download_signed_document"
    GET_INFOCERT_CONTRACT = "get_infocert_contract"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class OperationSpec:
    """One operation.

    Attributes:
        name: the operation.
        method: its HTTP method.
        path: the default path template (``{id}`` is the signature id).
        replay_safe: whether a lost answer or a 5xx may be retried: the call has no effect
            that repeats. The token request is safe (a second token costs nothing); an
            unsafe call is never sent twice once it may have reached the service.
        answers: the success statuses the contract documents for it.
        authenticated: whether it carries the bearer token.
        transfer: a large upload or download, bounded per read rather than in total.
    """

    name: Operation
    method: str
    path: str
    replay_safe: bool
    answers: frozenset[int]
    authenticated: bool = True
    transfer: bool = False

    @property
    def placeholders(self) -> frozenset[str]:
        """The ``{name}`` fields of the default path."""
        return frozenset(part.split("}", 1)[0] for part in self.path.split("{")[1:] if "}" in part)


_O = Operation
_200, _201, _204 = frozenset({200}), frozenset({201}), frozenset({204})
_TABLE = (  # name, method, path, replay-safe, answers
    OperationSpec(_O.CREATE_TOKEN, "POST", "/v1/oauth2/token", True, _200, authenticated=False),
    OperationSpec(_O.CREATE_WORKFLOW, "POST", "/v1/workflows", False, _201),
    OperationSpec(
        _O.UPLOAD_DOCUMENTS, "POST", "/v1/signatures/{id}/documents", False, _204, transfer=True
    ),
    OperationSpec(_O.UPLOAD_MOBILE_NUMBER, "PUT", "/v1/signatures/{id}/mobile-number", True, _204),
    OperationSpec(_O.UPLOAD_SELFIE, "POST", "/v1/signatures/{id}/selfie", False, _204),
    OperationSpec(_O.GET_SIGNATURE_DETAILS, "GET", "/v1/signatures/{id}/details", True, _200),
    OperationSpec(_O.APPROVE_DOCUMENTS, "POST", "/v1/signatures/{id}/approval", False, _200),
    OperationSpec(_O.CONFIRM_SIGNATURE, "POST", "/v1/signatures/{id}/confirmation", False, _200),
    OperationSpec(_O.GET_SIGNATURE_STATUS, "GET", "/v1/signatures/{id}/status", True, _200),
    OperationSpec(
        _O.DOWNLOAD_SIGNED_DOCUMENT,
        "GET",
        "/v1/signatures/{id}/documents/{document_id}",
        True,
        _200,
        transfer=True,
    ),
    OperationSpec(
        _O.GET_INFOCERT_CONTRACT,
        "GET",
        "/v1/signatures/{id}/infocert-contract",
        True,
        frozenset({200, 204}),
    ),
)

#: Operation -> its spec, in the contract's order (read-only).
OPERATIONS: Mapping[Operation, OperationSpec] = MappingProxyType({s.name: s for s in _TABLE})


def spec(operation: Operation | str) -> OperationSpec:
    """The spec of an operation, by member or by name.

    Raises:
        KeyError: an unknown operation name (a programming error, not user input).
    """
    try:  # a member, or its value (a str enum hashes and compares as its value)
        return OPERATIONS[operation]  # type: ignore[index]
    except KeyError:
        return OPERATIONS[Operation(operation)]
