"""The /_sandbox/ control endpoints, the public helpers, and the standalone command."""

from __future__ import annotations

import asyncio
import io
import shlex
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import PHONE, Api, api, clock, sandbox

from qes_async import FakeClock
from qes_async.sandbox import IdentityCase, MissingExtraError, SandboxServer, sandbox_ca
from qes_async.sandbox._control import _CASE_FIELDS, _FAULT_OPTIONS, CONTROL_PREFIX
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


def _banner(*options: str) -> list[str]:
    import argparse

    from qes_async.sandbox._standalone import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = io.StringIO()
    assert run(parser.parse_args([*options, "--serve-for", "0.05"]), out) == 0
    return out.getvalue().splitlines()


def test_standalone_prints_url_and_credentials() -> None:
    lines = _banner("--client-id", "me", "--client-secret", "s3cret-value")
    assert lines[0].startswith("qes-async sandbox serving on http://127.0.0.1:")
    assert lines[1:3] == ["  client_id:     me", "  client_secret: s3cret-value"]
    assert lines[-1] == "sandbox stopped"


def test_standalone_prints_an_export_line_the_cli_reads() -> None:
    """The line is shell syntax (quoted), with the variables the qes-async commands read."""
    secret = "it's a s3cret $value"
    lines = _banner("--client-id", "me", "--client-secret", secret)
    url = lines[0].rsplit(" ", 1)[-1]
    [export] = [line.strip() for line in lines if line.strip().startswith("export ")][:1]
    words = shlex.split(export)
    assert words[0] == "export"
    assert dict(word.split("=", 1) for word in words[1:]) == {
        "QES_BASE_URL": url,
        "QES_CLIENT_ID": "me",
        "QES_CLIENT_SECRET": secret,
    }
    cli = (Path(__file__).resolve().parents[2] / "qes_async" / "_cli" / "main.py").read_text(
        "utf-8"
    )
    for name in ("QES_BASE_URL", "QES_CLIENT_ID", "QES_CLIENT_SECRET"):
        assert f'os.environ.get("{name}")' in cli


def test_standalone_prints_how_to_fetch_and_use_its_ca() -> None:
    lines = [line.strip() for line in _banner()]
    url = lines[0].rsplit(" ", 1)[-1]
    assert f"curl -o sandbox-ca.pem {url}/_sandbox/ca.pem" in lines
    assert "export QES_TRUST_ROOTS=sandbox-ca.pem" in lines
    assert f"control:       {url}/_sandbox/ (GET it for the index of control endpoints)" in lines


def test_standalone_without_the_sandbox_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import qes_async.sandbox._server as server

    def missing() -> None:
        raise MissingExtraError("PDF signing needs the sandbox extra: pip install x")

    monkeypatch.setattr(server, "sandbox_ca", missing)
    lines = _banner()
    assert not any("ca.pem" in line for line in lines)
    assert any("pip install 'qes-async[sandbox]'" in line for line in lines)


async def test_ca_endpoint_serves_the_ca_that_signs_documents(
    api: Api, sandbox: SandboxServer, tmp_path: Path
) -> None:
    from qes_async._flow.pades import VALID, validate_pdf

    answer = await api.call("GET", "/_sandbox/ca.pem", auth=False)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/x-pem-file"
    assert answer.raw == sandbox.ca_pem == sandbox_ca().certificate_pem
    assert answer.raw.startswith(b"-----BEGIN CERTIFICATE-----")
    assert sandbox.ca_der == sandbox_ca().certificate_der
    sid = await api.to_signed()
    [doc] = sandbox.signature(sid).documents
    download = await api.call("GET", f"/v1/signatures/{sid}/documents/{doc.document_id}")
    assert download.status == 200
    pdf = download.raw[download.raw.index(b"%PDF-") :]
    (tmp_path / "signed.pdf").write_bytes(pdf)
    result = await asyncio.to_thread(
        validate_pdf, tmp_path / "signed.pdf", trust_roots=[answer.raw]
    )
    assert result.outcome == VALID, result
    assert [r.route for r in sandbox.request_log].count(None) == 0  # control: not logged


async def test_ca_endpoint_without_the_sandbox_extra_says_what_to_install(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qes_async.sandbox._server as server

    def missing() -> None:
        raise MissingExtraError("PDF signing needs the sandbox extra")

    monkeypatch.setattr(server, "sandbox_ca", missing)
    answer = await api.call("GET", "/_sandbox/ca.pem", auth=False)
    assert (answer.status, answer.json["code"]) == (501, "missing_extra")
    assert "sandbox extra" in answer.json["message"]


async def test_control_root_is_an_index_of_every_control_endpoint(
    api: Api, sandbox: SandboxServer
) -> None:
    index = await control(api, "GET", "")
    listed = {(e["method"], e["path"]) for e in index["endpoints"]}
    served = {
        (route.method, route.resource.canonical)
        for route in sandbox.make_app().router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(CONTROL_PREFIX)
        and route.method != "HEAD"
    }
    assert listed == served
    assert ("GET", "/_sandbox/") in listed
    assert ("GET", "/_sandbox/ca.pem") in listed
    assert all(e["does"] for e in index["endpoints"])
    body = {(e["method"], e["path"]): e["body"] for e in index["endpoints"]}
    # the documented fields are exactly those each endpoint accepts
    assert set(body["PUT", "/_sandbox/webhooks"]) == {"url", "basic", "bearer"}
    assert set(body["POST", "/_sandbox/faults"]) == {"kind", *_FAULT_OPTIONS}
    assert set(body["POST", "/_sandbox/clients"]) == {
        "clientReference",
        "extracted",
        *_CASE_FIELDS,
    }
    assert set(body["POST", "/_sandbox/faults/script"]) == {"steps", "route"}
    assert set(body["POST", "/_sandbox/clock/advance"]) == {"seconds"}
    assert set(body["POST", "/_sandbox/webhook-faults"]) <= {"kind", *_FAULT_OPTIONS}
    assert "kind" in body["POST", "/_sandbox/webhook-faults"]
    for (method, _), fields in body.items():
        if method in ("GET", "DELETE"):
            assert fields == {}
        assert all(isinstance(about, str) and about for about in fields.values())
    assert sandbox.request_log == []  # control calls are not logged


async def test_webhook_settings_refuse_unknown_and_malformed_fields(
    api: Api, sandbox: SandboxServer
) -> None:
    async def refused(body: Any) -> str:
        answer = await api.call("PUT", "/_sandbox/webhooks", json=body, auth=False)
        assert (answer.status, answer.json["code"]) == (400, "invalid_field"), answer
        return str(answer.json["message"])

    url = "http://127.0.0.1:9/hooks"
    assert "user" in await refused({"url": url, "user": "u", "password": "p"})
    assert "username" in await refused({"url": url, "basic": {"user": "u", "password": "p"}})
    assert "strings" in await refused({"url": url, "basic": {"username": "u", "password": 1}})
    assert "authUrl" in await refused({"url": url, "bearer": ["u", "p"]})
    assert "url" in await refused({"url": 42})
    assert "not both" in await refused(
        {
            "url": url,
            "basic": {"username": "u", "password": "p"},
            "bearer": {"authUrl": url, "username": "u", "password": "p"},
        }
    )
    assert sandbox.webhooks.config is None  # nothing refused was applied


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
