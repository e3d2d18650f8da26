"""Every HTTP fault knob, scripted and by seeded rate, per route and global."""

from __future__ import annotations

import io
import time

import aiohttp
import pytest
from sandbox_helpers import Api, api, clock, sandbox

from qes_async import FakeClock
from qes_async.sandbox import Fault, FaultPlan, SandboxServer

__all__ = ["api", "clock", "sandbox"]


async def test_server_error_is_answered_and_nothing_processed(
    api: Api, sandbox: SandboxServer
) -> None:
    await api.new_token()
    sandbox.script_faults([Fault("server_error", status=502)], route="create_workflow")
    answer = await api.call(
        "POST", "/v1/workflows", json={"workflowName": "qes", "clientReference": "c"}
    )
    assert (answer.status, answer.json["code"]) == (502, "server_error")
    assert sandbox.service.signatures == {}
    last = sandbox.request_log[-1]
    assert (last.route, last.status, last.processed, last.fault) == (
        "create_workflow",
        502,
        False,
        "server_error",
    )


async def test_rate_limit_carries_retry_after(api: Api, sandbox: SandboxServer) -> None:
    sid = await api.create()
    sandbox.inject_fault("rate_limit", route="get_signature_status", retry_after=7, times=1)
    first = await api.call("GET", f"/v1/signatures/{sid}/status")
    second = await api.call("GET", f"/v1/signatures/{sid}/status")
    assert (first.status, first.headers["Retry-After"], first.json["code"]) == (
        429,
        "7",
        "rate_limited",
    )
    assert second.status == 200


async def test_drop_before_processing_loses_the_call(api: Api, sandbox: SandboxServer) -> None:
    await api.new_token()
    sandbox.script_faults(["drop_before"], route="create_workflow")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.create()
    assert sandbox.service.signatures == {}
    assert (sandbox.request_log[-1].processed, sandbox.request_log[-1].fault) == (
        False,
        "drop_before",
    )


async def test_drop_after_processing_loses_only_the_answer(
    api: Api, sandbox: SandboxServer
) -> None:
    sid = await api.to_consent()
    sandbox.script_faults(["drop_after"], route="approve_documents")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.approve(sid)
    assert (await api.status(sid))["status"] == "confirmation_required"
    assert len(sandbox.sms_outbox) == 1
    log = [r for r in sandbox.request_log if r.route == "approve_documents"]
    assert [(r.status, r.processed, r.fault) for r in log] == [(0, True, "drop_after")]


async def test_slow_answer_waits_real_time_not_clock_time(
    api: Api, sandbox: SandboxServer, clock: FakeClock
) -> None:
    sid = await api.create()
    sandbox.script_faults([Fault("slow", delay=0.05)], route="get_signature_status")
    started, clock_before = time.monotonic(), clock.time()
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 200
    assert time.monotonic() - started >= 0.05
    assert clock.time() == clock_before


async def test_revoke_token_fault_answers_401_and_later_calls_need_a_new_token(
    api: Api, sandbox: SandboxServer
) -> None:
    sid = await api.create()
    sandbox.script_faults(["revoke_token"], route="get_signature_status")
    answer = await api.call("GET", f"/v1/signatures/{sid}/status")
    assert (answer.status, answer.json["code"]) == (401, "invalid_token")
    assert (await api.call("GET", f"/v1/signatures/{sid}/details")).status == 401
    api.token = None
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 200


async def test_global_script_applies_to_any_route_in_order(
    api: Api, sandbox: SandboxServer
) -> None:
    sid = await api.create()
    sandbox.script_faults(["server_error", "ok", "rate_limit"])
    statuses = [(await api.call("GET", f"/v1/signatures/{sid}/status")).status for _ in range(4)]
    assert statuses == [503, 200, 429, 200]


async def test_route_faults_leave_other_routes_alone(api: Api, sandbox: SandboxServer) -> None:
    sid = await api.create()
    sandbox.inject_fault("server_error", route="get_signature_details")
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 200
    assert (await api.call("GET", f"/v1/signatures/{sid}/details")).status == 503


def test_seeded_rates_are_deterministic() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(("server_error", "rate_limit"), seed)
        plan.add("server_error", rate=0.3)
        plan.add("rate_limit", rate=0.3, route="create_workflow")
        picks = [
            plan.pick("create_workflow" if i % 2 else "get_signature_status") for i in range(60)
        ]
        return [f.kind if f else None for f in picks]

    first = draws(11)
    assert first == draws(11)
    assert first != draws(12)
    assert {"server_error", "rate_limit", None} == set(first)


def test_rate_zero_never_and_times_limits() -> None:
    plan = FaultPlan(("server_error",), 1)
    plan.add("server_error", rate=0.0)
    assert [plan.pick(None) for _ in range(20)] == [None] * 20
    plan.clear()
    plan.add("server_error", times=2)
    assert [bool(plan.pick("x")) for _ in range(4)] == [True, True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kind": "explode"}, "unknown fault kind"), ({"kind": "server_error", "rate": 2}, "rate")],
)
def test_bad_fault_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    plan = FaultPlan(("server_error",))
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        plan.add(str(kind), **kwargs)  # type: ignore[arg-type]


async def test_unknown_route_name_is_refused(sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="unknown route"):
        sandbox.inject_fault("server_error", route="create_workflows")


async def test_seeded_sandboxes_give_the_same_ids_and_passcodes(clock: FakeClock) -> None:
    async def run() -> tuple[str, str]:
        async with (
            SandboxServer(clock=FakeClock(), seed=3) as sandbox,
            aiohttp.ClientSession() as s,
        ):
            api = Api(sandbox, s)
            sid = await api.to_confirmation()
            return sid, sandbox.latest_passcode(sid)

    assert await run() == await run()


async def test_revoke_token_fault_on_a_call_without_a_token_revokes_no_other_token(
    api: Api, sandbox: SandboxServer
) -> None:
    sid = await api.create()  # api holds a valid token now
    sandbox.script_faults(["revoke_token"], route="create_token")
    assert await api.new_token()  # the fault hits a call that presents no token
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 200


# ------------------------------------------------- faults of the wider chaos plan


async def test_slow_answer_processes_first_then_holds_the_answer(
    api: Api, sandbox: SandboxServer
) -> None:
    await api.new_token()
    sandbox.script_faults([Fault("slow_answer", delay=0.05)], route="create_workflow")
    started = time.monotonic()
    sid = await api.create("client-slow")
    assert time.monotonic() - started >= 0.05
    last = sandbox.request_log[-1]
    assert (last.route, last.processed, last.fault, last.signature_id) == (
        "create_workflow",
        True,
        "slow_answer",
        sid,
    )


async def test_a_create_logs_the_client_reference_it_carried(
    api: Api, sandbox: SandboxServer
) -> None:
    await api.create("client-77")
    assert sandbox.request_log[-1].client_reference == "client-77"


async def test_the_side_door_header_is_never_faulted(api: Api, sandbox: SandboxServer) -> None:
    await api.new_token()
    sandbox.script_faults(["server_error"], route="create_workflow")
    body = {"workflowName": "qes", "clientReference": "c"}
    planted = await api.call(
        "POST", "/v1/workflows", json=body, headers={"X-Sandbox-Faults": "off"}
    )
    assert planted.status == 201
    assert sandbox.request_log[-1].fault is None
    # The planted call drew nothing: the one scripted fault still hits the next call.
    assert (await api.call("POST", "/v1/workflows", json=body)).status == 503


async def _download(api: Api, sid: str) -> tuple[str, bytes]:
    details = (await api.details(sid)).json
    doc = details["documents"][0]["documentId"]
    async with api.session.get(
        f"{api.sandbox.url}/v1/signatures/{sid}/documents/{doc}",
        headers={"Authorization": f"Bearer {api.token}"},
    ) as response:
        assert response.status == 200
        raw = await response.read()
    disposition = raw.split(b"filename=", 1)[1].split(b"\r\n", 1)[0].strip(b'"')
    pdf = raw.rsplit(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    return disposition.decode("utf-8"), pdf


async def test_unreadable_pdf_passes_the_envelope_check_but_not_a_parser(
    api: Api, sandbox: SandboxServer
) -> None:
    pytest.importorskip("pyhanko")
    from pyhanko.pdf_utils.reader import PdfFileReader

    sid = await api.to_signed()
    sandbox.script_faults(["unreadable_pdf"], route="download_signed_document")
    _, pdf = await _download(api, sid)
    assert pdf.startswith(b"%PDF-")
    assert b"%%EOF" in pdf[-16:]

    with pytest.raises(Exception):  # noqa: B017,PT011 - any parse failure will do
        PdfFileReader(io.BytesIO(pdf)).root  # noqa: B018
    assert sandbox.request_log[-1].fault == "unreadable_pdf"


async def test_hostile_names_come_in_turn(api: Api, sandbox: SandboxServer) -> None:
    from qes_async.sandbox._api import HOSTILE_NAMES

    sid = await api.to_signed()
    n = len(HOSTILE_NAMES)
    sandbox.script_faults(["hostile_name"] * n, route="download_signed_document")
    names = [(await _download(api, sid))[0] for _ in range(n)]
    assert names == list(HOSTILE_NAMES)  # sent as they are: backslashes, bidi and all
    assert len(names[0].encode()) > 255
