"""``qes-async doctor``: the classification table, and runs against sandboxes that serve the
default layout, a moved one, and hosts that cannot be reached or trusted."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import register_secret
from test_threat_tls import _make_pki

from qes_async import FakeClock, QESClient, Routes
from qes_async._cli.doctor import (
    Answer,
    DoctorReport,
    Verdict,
    candidate_paths,
    classify,
    override_line,
    read_answer,
)
from qes_async._cli.doctor_run import run_doctor
from qes_async.sandbox import SandboxServer

#: A deployment whose routes differ from our defaults in three places, each findable.
MOVED = {
    "upload_mobile_number": "/v1/qualifiedElectronicSignature/{id}/mobile-number",
    "get_signature_status": "/v1/qualifiedElectronicSignature/{id}/status",
    "confirm_signature": "/v1/signatures/{id}/confirm",
}
BASELINE = Answer(404, "not_found", True)


# --------------------------------------------------------------------------- pure reading


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (Answer(404, "signature_not_found", True), Verdict.OK),
        (Answer(400, "invalid_json", True), Verdict.OK),
        (Answer(422, "flow_expired", True), Verdict.OK),
        (Answer(404, "not_found", True), Verdict.WRONG),  # the same as a path nobody serves
        (Answer(404), Verdict.WRONG),
        (Answer(405), Verdict.WRONG),
        (Answer(405, "method_not_allowed", True), Verdict.WRONG),
        (Answer(401, "invalid_token", True), Verdict.NOT_ENABLED),
        (Answer(403), Verdict.NOT_ENABLED),
        (Answer(400), Verdict.UNKNOWN),
        (Answer(500, "server_error", True), Verdict.UNKNOWN),
        (Answer(200), Verdict.UNKNOWN),
        (Answer(None, detail="timed out"), Verdict.UNKNOWN),
    ],
)
def test_answers_are_classified_against_the_baseline(answer: Answer, verdict: Verdict) -> None:
    assert classify(answer, BASELINE) is verdict


def test_without_a_baseline_a_shaped_404_counts_as_a_route() -> None:
    assert classify(Answer(404, "not_found", True), None) is Verdict.OK


@pytest.mark.parametrize(
    ("content_type", "body", "shaped", "code"),
    [
        ("application/json", b'{"code": "signature_not_found", "message": "m"}', True, "x"),
        ("application/json", b'{"message": "m", "errors": []}', True, None),
        # a framework's own error page in JSON: no code, no errors list
        ("application/json", b'{"timestamp": 1, "status": 404, "error": "Not Found"}', False, None),
        ("text/html", b"<html>404</html>", False, None),
        ("application/json", b"[1]", False, None),
        ("application/json", b"\xff", False, None),
    ],
)
def test_only_the_contract_error_shape_counts(
    content_type: str, body: bytes, shaped: bool, code: str | None
) -> None:
    answer = read_answer(404, content_type, body)
    assert answer.shaped is shaped
    if code:
        assert answer.code == "signature_not_found"


def test_candidates_try_confirmed_prefixes_first_and_skip_taken_paths() -> None:
    routes = Routes()
    found = candidate_paths(
        "get_signature_status", routes, ["/v1/qualifiedElectronicSignature/{id}/details"]
    )
    assert found[0] == "/v1/qualifiedElectronicSignature/{id}/status"
    assert routes.get_signature_status not in found
    assert "/v1/signatures/{id}/details" not in candidate_paths("get_signature_details", routes)
    assert candidate_paths("confirm_signature", routes)[:2] == [
        "/v1/signatures/{id}/confirm",
        "/v1/signatures/{id}/confirmations",
    ]
    assert override_line("confirm_signature", "/x/{id}") == 'confirm_signature = "/x/{id}"'


# ------------------------------------------------------------------ against the sandbox


async def _doctor(
    sandbox: SandboxServer, routes: Routes | None = None, **kw: object
) -> DoctorReport:
    secret = str(kw.pop("secret", sandbox.client_secret))
    async with QESClient(
        sandbox.client_id, secret, base_url=sandbox.url, routes=routes, **kw
    ) as client:
        return await run_doctor(client, timeout=5.0)


def _verdicts(report: DoctorReport) -> dict[str, Verdict]:
    return {r.operation: r.verdict for r in report.routes}


def _acted(sandbox: SandboxServer) -> list[str]:
    """Calls that changed the service's state, other than issuing the token."""
    return [
        r.route or r.path for r in sandbox.request_log if r.processed and r.route != "create_token"
    ]


async def test_doctor_against_a_matching_layout_finds_every_route_right() -> None:
    async with SandboxServer(FakeClock()) as sandbox:
        register_secret(sandbox.client_secret)
        report = await _doctor(sandbox)
    assert report.ok, report.render()
    assert set(_verdicts(report).values()) == {Verdict.OK}
    assert len(report.routes) == len(Routes.operations())
    assert [r.override for r in report.routes if r.override] == []
    assert "token_type Bearer, expires_in 3600" in report.render()
    # Nothing was created or changed: independent evidence from the service's side.
    assert sandbox.service.signatures == {}
    assert _acted(sandbox) == []
    assert sandbox.client_secret not in report.render()
    assert sandbox.client_secret not in json.dumps(report.to_json())


async def test_doctor_flags_exactly_the_moved_routes_with_their_override_lines() -> None:
    async with SandboxServer(FakeClock(), routes=MOVED) as sandbox:
        report = await _doctor(sandbox)  # the client assumes the default layout
    wrong = {op for op, verdict in _verdicts(report).items() if verdict is not Verdict.OK}
    assert wrong == set(MOVED)
    assert {r.operation: r.override for r in report.routes if r.override} == {
        op: override_line(op, path) for op, path in MOVED.items()
    }
    assert not report.ok
    assert sandbox.service.signatures == {}
    assert _acted(sandbox) == []


async def test_doctor_with_the_matching_routes_file_passes_the_moved_layout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(Routes.coerce(MOVED).to_text("toml"), encoding="utf-8")
    async with SandboxServer(FakeClock(), routes=Routes.from_file(path)) as sandbox:
        report = await _doctor(sandbox, Routes.from_file(path))
    assert report.ok, report.render()


async def test_a_route_moved_beyond_guessing_is_flagged_without_an_override() -> None:
    async with SandboxServer(FakeClock(), routes={"upload_selfie": "/v9/x/{id}/face"}) as sandbox:
        report = await _doctor(sandbox)
    (row,) = [r for r in report.routes if r.verdict is not Verdict.OK]
    assert (row.operation, row.override) == ("upload_selfie", None)
    assert "ask Fourthline" in row.note


async def test_wrong_credentials_stop_before_the_routes() -> None:
    async with SandboxServer(FakeClock()) as sandbox:
        report = await _doctor(sandbox, secret="not-the-secret-at-all")
    token = next(s for s in report.steps if s.name == "token")
    assert token.ok is False
    assert "credentials refused: 401 invalid_client" in token.detail
    assert {r.verdict for r in report.routes[1:]} == {Verdict.NOT_PROBED}
    assert not report.ok


async def test_an_unresolvable_host_fails_at_dns() -> None:
    async with QESClient("id", "secret-xyz", base_url="https://doctor-check.invalid") as client:
        report = await run_doctor(client, timeout=5.0)
    assert [(s.name, s.ok) for s in report.steps] == [("dns", False)]
    assert not report.ok


async def test_a_closed_port_fails_at_tcp() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with QESClient("id", "secret-xyz", base_url=f"http://127.0.0.1:{port}") as client:
        report = await run_doctor(client, timeout=5.0)
    assert [(s.name, s.ok) for s in report.steps] == [("dns", True), ("tcp", False)]
    assert "refused" in report.steps[1].detail.lower()


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    ca, cert, key = _make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", ca
    finally:
        await runner.cleanup()


async def test_tls_is_checked_with_the_configured_trust(https_url: tuple[str, Path]) -> None:
    url, ca = https_url
    async with QESClient("id", "secret-xyz", base_url=url) as client:
        untrusted = await run_doctor(client, timeout=5.0)
    tls = untrusted.steps[-1]
    assert (tls.name, tls.ok) == ("tls", False)
    assert "system trust store" in tls.detail
    assert "not trusted" in tls.detail
    trusted_ctx = ssl.create_default_context(cafile=str(ca))
    async with QESClient("id", "secret-xyz", base_url=url, ssl=trusted_ctx) as client:
        trusted = await run_doctor(client, timeout=5.0)
    assert [(s.name, s.ok) for s in trusted.steps[:3]] == [
        ("dns", True),
        ("tcp", True),
        ("tls", True),
    ]
    assert "configured SSL context" in trusted.steps[2].detail


async def test_a_flow_completes_on_the_moved_layout_with_only_the_suggested_routes_file(
    tmp_path: Path,
) -> None:
    from flow_helpers import World

    from qes_async import FlowOutcome

    clock = FakeClock()
    async with SandboxServer(clock, routes=MOVED, seed=3) as sandbox:
        report = await _doctor(sandbox)
        path = tmp_path / "routes.toml"
        path.write_text("\n".join(r.override for r in report.routes if r.override) + "\n")
        before = len(sandbox.request_log)  # the doctor's probes hit unserved paths on purpose
        async with QESClient(
            sandbox.client_id,
            sandbox.client_secret,
            base_url=sandbox.url,
            clock=clock,
            routes=Routes.from_file(path),
        ) as client:
            result = await World(sandbox, client, clock, tmp_path).flow().run()
    assert result.outcome is FlowOutcome.SIGNED
    flow_calls = sandbox.request_log[before:]
    served = {r.route for r in flow_calls if r.processed}
    assert {"upload_mobile_number", "confirm_signature"} <= served
    assert all(r.route is not None for r in flow_calls)  # no call missed a route


async def test_a_moved_token_route_is_found_and_the_routes_are_still_probed() -> None:
    async with SandboxServer(FakeClock(), routes={"create_token": "/oauth2/token"}) as sandbox:
        report = await _doctor(sandbox)
    wrong = [r for r in report.routes if r.verdict is not Verdict.OK]
    assert [(r.operation, r.override) for r in wrong] == [
        ("create_token", 'create_token = "/oauth2/token"')
    ]
    token = next(s for s in report.steps if s.name == "token")
    assert token.ok is True
    assert "at /oauth2/token" in token.detail


async def test_a_token_route_beyond_guessing_stops_with_the_token_row_wrong() -> None:
    async with SandboxServer(FakeClock(), routes={"create_token": "/v9/auth"}) as sandbox:
        report = await _doctor(sandbox)
    assert (report.routes[0].operation, report.routes[0].verdict) == ("create_token", Verdict.WRONG)
    assert report.routes[0].override is None
    assert next(s for s in report.steps if s.name == "token").ok is False
    assert {r.verdict for r in report.routes[1:]} == {Verdict.NOT_PROBED}
