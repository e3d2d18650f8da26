"""What every parked flow would otherwise hold a copy of is one shared object.

A waiting flow's memory is multiplied by the flows parked at once (benchmark 3's memory
row), so equal target sets and the JSON headers and empty params of every request are
shared, and the shared ones cannot be changed through one request.
"""

from __future__ import annotations

import pytest

from qes_async import Status
from qes_async._client.protocol import JSON_HEADERS, Request
from qes_async._waiting.logic import normalize_targets


def test_equal_target_sets_are_one_object() -> None:
    first = normalize_targets([Status.PENDING, "signed"])
    second = normalize_targets(["signed", Status.PENDING])
    assert first == frozenset({Status.PENDING, Status.SIGNED})
    assert first is second


def test_requests_share_their_default_headers_and_params_read_only() -> None:
    one = Request("GET", "get_signature_status", "/v1/signatures/a/status")
    two = Request("GET", "get_signature_status", "/v1/signatures/b/status")
    assert one.headers is two.headers is JSON_HEADERS
    assert one.params is two.params
    assert dict(one.headers) == {"Accept": "application/json"}
    with pytest.raises(TypeError):
        one.headers["Accept"] = "text/html"  # type: ignore[index]
    with pytest.raises(TypeError):
        one.params["x"] = "y"  # type: ignore[index]
