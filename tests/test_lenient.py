"""Lenient where the real API may differ: string status codes, language-tag case, and
workflow names that are opaque and keep their case."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from flow_helpers import world

from qes_async import (
    BadRequestError,
    FakeClock,
    FlowOutcome,
    InvalidInputError,
    KYCRequiredError,
    QESClient,
    Status,
    WebhookDispatcher,
)
from qes_async._core.lenient import language_key, read_status_code
from qes_async.sandbox import IdentityCase, SandboxServer
from qes_async.webhooks import BasicAuth, WebhookReceiver

USER, PASSWORD = "fourthline", "hook-password-lenient"


@pytest.mark.parametrize(
    ("raw", "code"),
    [(3105, 3105), ("1036", 1036), (" 140 ", 140), (None, None), (3105.0, 3105), (-1, -1)],
)
def test_status_codes_read_from_integers_numeric_strings_and_null(
    raw: object, code: int | None
) -> None:
    assert read_status_code(raw) == code


@pytest.mark.parametrize("raw", [True, "31x5", "", "1.0", 3.5, [1], "\uff11\uff12", "1" * 13, {}])
def test_status_codes_refuse_everything_else(raw: object) -> None:
    with pytest.raises(ValueError, match="status code"):
        read_status_code(raw)


def test_language_tags_compare_without_case() -> None:
    assert language_key("EN-gb") == language_key("en-GB") == "en-gb"
    assert language_key("zh-Hant-TW") == "zh-hant-tw"
    for bad in ("e", "en_GB", "en-", "", "en gb"):
        with pytest.raises(ValueError, match="BCP 47"):
            language_key(bad)


async def _raw_status(sandbox: SandboxServer, client: QESClient, sid: str) -> object:
    token = (await client._tokens.get()).value
    url = sandbox.url + sandbox.routes.path("get_signature_status", id=sid)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp,
    ):
        return (await resp.json())["statusCode"]


async def test_string_status_codes_from_the_sandbox_parse_as_integers() -> None:
    clock = FakeClock()
    cases = {"risky": IdentityCase(risk_score=500)}
    async with (
        SandboxServer(clock, clients=cases, string_status_codes=True) as sandbox,
        QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client,
    ):
        sid = (await client.create_workflow("risky")).workflow_id
        sandbox.advance(60)
        assert await _raw_status(sandbox, client, sid) == "1201"  # the wire has a string
        report = await client.get_signature_status(sid)
        assert report.status is Status.KYC_REQUIRED
        assert report.status_code == 1201
        assert KYCRequiredError(report).status_codes == (1201,)


async def test_string_status_codes_in_webhooks_reach_the_waiter_as_integers() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    receiver = WebhookReceiver(dispatcher, BasicAuth(USER, PASSWORD), clock=clock)
    async with (
        TestServer(receiver.aiohttp_app()) as hook_server,
        SandboxServer(
            clock, clients={"risky": IdentityCase(risk_score=500)}, string_status_codes=True
        ) as sandbox,
        QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client,
    ):
        sandbox.configure_webhooks(
            str(hook_server.make_url("/fourthline/qes")), basic=(USER, PASSWORD)
        )
        sid = (await client.create_workflow("risky")).workflow_id
        with dispatcher.subscribe(sid) as subscription:
            sandbox.advance(60)
            for _ in range(200):
                if sum(d.http_status == 204 for d in sandbox.webhook_deliveries) >= 2:
                    break
                await asyncio.sleep(0.01)
            events = subscription.drain()
    assert {d.http_status for d in sandbox.webhook_deliveries} == {204}
    assert [(e.status, e.status_code) for e in events][-1] == (Status.KYC_REQUIRED, 1201)


def test_webhook_receiver_takes_string_codes_in_errors_too() -> None:
    dispatcher = WebhookDispatcher(clock=FakeClock())
    receiver = WebhookReceiver(dispatcher, BasicAuth(USER, PASSWORD))
    import base64
    import json

    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    body = {
        "signatureId": "s-1",
        "status": "kyc_required",
        "statusCode": "1201",
        "errors": [{"code": "x", "statusCode": "140"}, {"code": "y", "statusCode": "bad"}],
    }
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}
    answer = receiver.handle("POST", "/fourthline/qes/s-1", headers, json.dumps(body).encode())
    assert answer.status == 204
    with dispatcher.subscribe("s-1") as subscription:
        (event,) = subscription.drain()
    assert event.status_code == 1201
    assert [e.status_code for e in event.errors] == [140, None]


async def test_language_tags_of_any_case_are_accepted_by_client_and_sandbox(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        flow = w.flow(language="EN-gb", passcode_language="De")
        result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    details = [r for r in w.sandbox.request_log if r.route == "get_signature_details"]
    assert details
    assert {r.status for r in details} == {200}


async def test_a_malformed_language_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        with pytest.raises(InvalidInputError, match="BCP 47"):
            w.flow(language="en_GB")
        with pytest.raises(InvalidInputError, match="passcode_language"):
            w.flow(passcode_language="english language")
        assert w.sandbox.request_log == []


async def test_workflow_name_is_sent_exactly_and_its_case_counts(tmp_path: Path) -> None:
    async with world(tmp_path, workflow_names=("IDVandQES",)) as w:
        with pytest.raises(BadRequestError, match="workflowName"):
            await w.client.create_workflow("client-1", workflow_name="idvandqes")
        with pytest.raises(BadRequestError, match="workflowName"):
            await w.client.create_workflow("client-1")  # the default, qes, is not agreed here
        result = await w.flow(workflow_name="IDVandQES").run()
    assert result.outcome is FlowOutcome.SIGNED


async def test_a_restarted_flow_keeps_its_workflow_name(tmp_path: Path) -> None:
    async with world(tmp_path, workflow_names=("QES",)) as w:
        flow = w.flow(workflow_name="QES", signer=w.signer(consent_delay=3 * 3600))
        result = await flow.run()
        assert result.outcome is FlowOutcome.SIGNED
        assert w.created() == 2  # the consent window ran out: a second workflow, same name


@pytest.mark.parametrize("name", ["", " QES", "QES\n", 3, "x" * 101])
def test_bad_workflow_names_are_refused(name: object) -> None:
    from qes_async._client.validation import check_workflow_name

    with pytest.raises(InvalidInputError, match="workflow_name"):
        check_workflow_name(name)
