"""The operation table is the one declaration of each operation: every layer reads it.

These tests fail when a layer keeps its own copy (a Routes field, a protocol method, the
sandbox's router, the doctor's probes) that drifts from the table, or when the sandbox
answers an operation with a status the table does not expect.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from qes_async import Routes, SignatureFlow
from qes_async._cli import doctor
from qes_async._client import protocol as proto
from qes_async._client.operations import OPERATIONS, Operation, spec
from qes_async.sandbox import IdentityCase, SandboxServer
from tests.flow_helpers import world


def test_the_table_lists_every_operation_once_in_the_enum_order() -> None:
    assert list(OPERATIONS) == list(Operation)
    assert [s.name for s in OPERATIONS.values()] == list(Operation)
    assert spec("confirm_signature") is OPERATIONS[Operation.CONFIRM_SIGNATURE]
    with pytest.raises(ValueError, match="confirm_signatures"):
        spec("confirm_signatures")


def test_routes_has_one_field_per_operation_defaulting_to_the_tables_path() -> None:
    assert Routes.operations() == tuple(op.value for op in Operation)
    defaults = attrs.asdict(Routes())
    assert defaults == {op.value: s.path for op, s in OPERATIONS.items()}


@pytest.mark.parametrize("operation", list(Operation))
def test_a_request_takes_method_replay_safety_and_transfer_from_the_table(
    operation: Operation,
) -> None:
    s = spec(operation)
    if operation is Operation.CREATE_TOKEN:
        request = proto.token_request(Routes(), "id", "secret")
    else:
        request = proto.build_request(Routes(), operation, signature_id="S1", document_id="D1")
    assert (request.method, request.operation) == (s.method, operation.value)
    assert request.idempotent is s.replay_safe
    assert request.authenticated is s.authenticated
    assert request.transfer is s.transfer
    assert "{" not in request.path


def test_only_calls_without_a_repeating_effect_are_replay_safe() -> None:
    unsafe = {op for op, s in OPERATIONS.items() if not s.replay_safe}
    assert unsafe == {
        Operation.CREATE_WORKFLOW,
        Operation.UPLOAD_DOCUMENTS,
        Operation.UPLOAD_SELFIE,
        Operation.APPROVE_DOCUMENTS,
        Operation.CONFIRM_SIGNATURE,
    }


def test_a_per_operation_retry_rule_is_a_change_of_one_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flip one entry and the request built for it follows; nothing else needs editing."""
    from qes_async._client import operations

    flipped = attrs.evolve(spec(Operation.CONFIRM_SIGNATURE), replay_safe=True)
    table = dict(operations.OPERATIONS)
    table[Operation.CONFIRM_SIGNATURE] = flipped
    monkeypatch.setattr(operations, "OPERATIONS", table)
    request = proto.build_request(Routes(), Operation.CONFIRM_SIGNATURE, signature_id="S1")
    assert request.idempotent is True


def test_the_doctor_probes_with_the_tables_methods() -> None:
    assert {op.value: s.method for op, s in OPERATIONS.items()} == doctor.METHODS


async def test_the_sandbox_routes_every_operation_with_the_tables_method() -> None:
    async with SandboxServer() as sandbox:
        app = sandbox.make_app()
        found = {}
        for resource in app.router.resources():
            if resource.name in {op.value for op in Operation}:
                found[resource.name] = {r.method for r in resource} - {"HEAD"}
    assert found == {op.value: {s.method} for op, s in OPERATIONS.items()}


@pytest.mark.parametrize("qtsp", ["infocert", "namirial"])
async def test_every_success_the_sandbox_sends_is_one_the_table_expects(
    tmp_path: Path, qtsp: str
) -> None:
    """Counted from the sandbox's own request log: what actually went over the wire."""
    case = IdentityCase(qtsp=qtsp, case_age_hours=48)  # an old case also asks for a selfie
    async with world(tmp_path, {"client-1": case}) as w:
        flow: SignatureFlow = w.flow()
        await flow.run()
        seen: dict[str, set[int]] = {}
        for record in w.sandbox.request_log:
            if record.route is not None and record.status < 300:
                seen.setdefault(record.route, set()).add(record.status)
    for route, statuses in seen.items():
        assert statuses <= spec(route).answers, route
    # The ceremony used all of them (the selfie because of the old case).
    assert set(seen) == {op.value for op in Operation}
