"""The /_sandbox/ control endpoints, the public helpers, and the standalone command."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sandbox_helpers import PHONE, Api, api, clock, sandbox

from qes_async._clock import FakeClock
from qes_async.sandbox import IdentityCase, SandboxServer
from qes_async.sandbox._standalone import build_server, main, run

__all__ = ["api", "clock", "sandbox"]


async def control(api: Api, method: str, path: str, body: Any = None) -> Any:
    answer = await api.call(method, "/_sandbox/" + path, json=body, auth=False)
    assert answer.status == 200, answer
    return answer.json


async def test_sms_outbox_and_latest_passcode(
    api: Api, sandbox: SandboxServer, secrets_registry: Any
) -> None:
    sid = await api.to_confirmation()
    passcode = sandbox.latest_passcode(sid)
    secrets_registry(sandbox.client_secret, PHONE, passcode, api.token or "")
    [record] = await control(api, "GET", "sms")
    assert (record["signature_id"], record["mobile_number"], record["passcode"]) == (
        sid,
        PHONE,
        passcode,
    )
    assert record["sent_at"] == sandbox.clock.time()
    assert await control(api, "GET", f"sms/{sid}/latest") == {"passcode": passcode}
    assert (await api.confirm(sid)).status == 200


async def test_latest_passcode_of_an_unknown_signature(sandbox: SandboxServer) -> None:
    with pytest.raises(LookupError):
        sandbox.latest_passcode("nope")


async def test_clock_advance_fires_deadlines(api: Api, clock: FakeClock) -> None:
    sid = await api.to_consent()
    body = await control(api, "POST", "clock/advance", {"seconds": 86400})
    assert (body["time"], body["fake"]) == (FakeClock.DEFAULT_START + 86400, True)
    assert (await api.status(sid))["status"] == "error"


async def test_clients_endpoint_registers_an_identity_case(
    api: Api, sandbox: SandboxServer
) -> None:
    await control(api, "POST", "clients", {"clientReference": "risky", "riskScore": 500})
    assert sandbox.service.cases["risky"] == IdentityCase(risk_score=500)
    answer = await api.call(
        "POST", "/_sandbox/clients", json={"clientReference": "x", "nope": 1}, auth=False
    )
    assert (answer.status, answer.json["code"]) == (400, "invalid_field")


async def test_fault_endpoints(api: Api, sandbox: SandboxServer) -> None:
    sid = await api.create()
    await control(
        api, "POST", "faults", {"kind": "server_error", "route": "get_signature_status", "times": 1}
    )
    await control(
        api,
        "POST",
        "faults/script",
        {"steps": ["ok", "rate_limit"], "route": "get_signature_status"},
    )
    statuses = [(await api.call("GET", f"/v1/signatures/{sid}/status")).status for _ in range(4)]
    assert statuses == [200, 429, 503, 200]
    await control(api, "POST", "faults", {"kind": "server_error"})
    await control(api, "DELETE", "faults")
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 200
    bad = await api.call("POST", "/_sandbox/faults", json={"kind": "explode"}, auth=False)
    assert bad.status == 400


async def test_request_log_and_revocation_endpoints(api: Api) -> None:
    sid = await api.create()
    await control(api, "POST", "tokens/revoke")
    assert (await api.call("GET", f"/v1/signatures/{sid}/status")).status == 401
    log = await control(api, "GET", "requests")
    assert [(r["route"], r["status"], r["signature_id"]) for r in log] == [
        ("create_token", 200, None),
        ("create_workflow", 201, sid),
        ("get_signature_status", 401, sid),
    ]
    state = await control(api, "GET", f"signatures/{sid}")
    assert (state["status"], state["clientReference"]) == ("pending", "client-1")


async def test_webhook_settings_endpoint(api: Api, sandbox: SandboxServer) -> None:
    await control(
        api,
        "PUT",
        "webhooks",
        {
            "url": "http://127.0.0.1:9/hooks",
            "bearer": {"authUrl": "http://127.0.0.1:9/t", "username": "u", "password": "p"},
        },
    )
    assert sandbox.webhooks.config is not None
    assert sandbox.webhooks.config.bearer == ("http://127.0.0.1:9/t", "u", "p")
    assert await control(api, "GET", "webhooks/deliveries") == []
    await control(api, "PUT", "webhooks", {"url": None})
    assert sandbox.webhooks.config is None


async def test_advance_on_a_real_clock_is_refused() -> None:
    import aiohttp

    async with SandboxServer() as sb, aiohttp.ClientSession() as session:
        answer = await Api(sb, session).call(
            "POST", "/_sandbox/clock/advance", json={"seconds": 1}, auth=False
        )
    assert (answer.status, answer.json["code"]) == (409, "real_clock")


def test_standalone_prints_url_and_credentials() -> None:
    import argparse

    from qes_async.sandbox._standalone import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--client-id", "me", "--client-secret", "s3cret-value", "--serve-for", "0.05"]
    )
    out = io.StringIO()
    assert run(args, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("qes-async sandbox serving on http://127.0.0.1:")
    assert lines[1:3] == ["  client_id:     me", "  client_secret: s3cret-value"]
    assert lines[-1] == "sandbox stopped"


def test_standalone_webhook_options_choose_basic_or_bearer() -> None:
    import argparse

    from qes_async.sandbox._standalone import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    basic = build_server(
        parser.parse_args(
            ["--webhook-url", "http://h/x", "--webhook-user", "u", "--webhook-password", "p"]
        )
    )
    bearer = build_server(
        parser.parse_args(
            [
                "--webhook-url",
                "http://h/x",
                "--webhook-user",
                "u",
                "--webhook-password",
                "p",
                "--webhook-auth-url",
                "http://h/t",
                "--fake-clock",
            ]
        )
    )
    assert basic.webhooks.config is not None
    assert basic.webhooks.config.basic == ("u", "p")
    assert bearer.webhooks.config is not None
    assert bearer.webhooks.config.bearer == ("http://h/t", "u", "p")
    assert isinstance(bearer.clock, FakeClock)


def test_main_refuses_bad_options() -> None:
    with pytest.raises(SystemExit):
        main(["--port", "nope"])
