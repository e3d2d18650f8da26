"""OpenTelemetry: the spans and metrics of a whole flow, of HTTP attempts and of webhooks,
read back from the SDK's in-memory exporter and reader.

Every test here exports through the ``otel`` fixture, whose spans (names, attributes,
events, status texts) and metric attributes are searched for the registered secrets when
the test ends, like the log records (``conftest.register_texts``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import CLIENT_SECRET, FakeAPI, register_secret, register_texts
from flow_helpers import MOBILE, world
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import qes_async.otel
from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    FakeClock,
    FlowOutcome,
    KYCRequiredError,
    PasscodeRequest,
    RequestNotSentError,
    WebhookDispatcher,
    make_pdf,
)
from qes_async._runtime import telemetry as _telemetry
from qes_async.sandbox import IdentityCase
from qes_async.webhooks import BasicAuth, WebhookReceiver

DOC_MARK = "DOCMARK-q7f3a9"  # text inside the document's bytes: it must never be exported
WRONG = "482916"
SEMCONV_HTTP = (
    "http.request.method",
    "url.template",
    "server.address",
    "server.port",
    "http.response.status_code",
)


class Telemetry:
    """The in-memory exporter and metric reader of one test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return sorted(
            (s for s in found if name is None or s.name == name),
            key=lambda s: s.start_time or 0,
        )

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of each data point; a histogram's value is its count."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for point in m.data.data_points:
                            value = getattr(point, "value", None)
                            if value is None:
                                value = point.count  # type: ignore[union-attr]
                            found.append((dict(point.attributes or {}), value))
        return found

    def total(self, metric: str, **attributes: Any) -> Any:
        return sum(
            value
            for attrs, value in self.points(metric)
            if all(attrs.get(k) == v for k, v in attributes.items())
        )

    def texts(self) -> list[str]:
        """Everything exported that a person or a backend can read."""
        texts: list[str] = []
        for span in self.exporter.get_finished_spans():
            texts.append(span.name)
            texts += _shown(span.attributes)
            texts.append(span.status.description or "")
            for event in span.events:
                texts.append(event.name)
                texts += _shown(event.attributes)
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    texts.append(m.name)
                    for point in m.data.data_points:
                        texts += _shown(point.attributes)
        return texts


def _shown(attributes: Mapping[str, Any] | None) -> list[str]:
    texts: list[str] = []
    for key, value in (attributes or {}).items():
        texts.append(key)
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        texts += [str(item) for item in items]
    return texts


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    exported: list[str] = []
    register_texts(lambda: exported)  # searched once the test has ended
    qes_async.otel.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        yield telemetry
    finally:
        qes_async.otel.uninstrument()
        exported += telemetry.texts()


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _signer(sandbox: Any, clock: FakeClock, consent_delay: float) -> CallbackSigner:
    """Consents late the first time (the consent deadline passes: a restart), then types
    one wrong passcode before the right one."""
    consents: list[ConsentRequest] = []
    passcodes: list[PasscodeRequest] = []

    async def consent(request: ConsentRequest) -> bool:
        consents.append(request)
        if len(consents) == 1:
            await clock.sleep(consent_delay)
        return True

    def passcode(request: PasscodeRequest) -> str:
        passcodes.append(request)
        right = str(sandbox.latest_passcode(request.signature_id))
        register_secret(right)
        return WRONG if len(passcodes) == 1 and right != WRONG else right

    return CallbackSigner(consent=consent, passcode=passcode)


# ------------------------------------------------------------------------ a whole flow


async def test_a_whole_flow_with_a_retry_a_wrong_passcode_and_a_restart(
    otel: Telemetry, tmp_path: Path, captured_logs: list[logging.LogRecord]
) -> None:
    async with world(tmp_path) as w:
        register_secret(w.sandbox.client_secret, MOBILE, WRONG, DOC_MARK)
        w.sandbox.script_faults(["server_error"], route="get_signature_status")
        flow = w.flow(
            signer=_signer(w.sandbox, w.clock, 2 * 3600 + 60),
            documents=[Document.from_bytes("loan.pdf", make_pdf(f"Loan {DOC_MARK}"))],
        )
        result = await flow.run()
    assert result.outcome is FlowOutcome.SIGNED
    first, second = result.generations
    assert first.ended == "deadline_passed"

    spans = otel.spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "qes.flow"
    assert _attrs(root) == {
        "qes.flow.id": flow.flow_id,
        "qes.flow.resumed": False,
        "qes.generation": 2,
        "qes.signature.id": second.signature_id,
        "qes.flow.outcome": "signed",
        "qes.flow.restarts": 1,
        "qes.restart.reasons": ("deadline_passed",),
    }
    assert root.status.status_code is StatusCode.UNSET

    # A child span per step, each with its generation and signature id.
    steps = _children(spans, root)
    assert all(s.name.startswith("qes.step ") for s in steps)
    names = [s.name.removeprefix("qes.step ") for s in steps]
    assert names.count("create_workflow") == 2
    assert names.count("confirm") == 2  # the wrong passcode, then the right one
    (restarting,) = [s for s in steps if _attrs(s).get("qes.restart.reason")]
    assert restarting.name == "qes.step approve"
    assert _attrs(restarting)["qes.restart.reason"] == "deadline_passed"
    assert _attrs(restarting)["qes.signature.id"] == first.signature_id
    assert _attrs(restarting)["qes.generation"] == 1
    assert _attrs(restarting)["qes.step.next"] == "restart"
    assert _attrs(steps[-1])["qes.generation.ended"] == "signed"

    # A child span per wait: the statuses and the signer.
    waits = [s for s in spans if s.name.startswith("qes.wait ")]
    signer_waits = [
        (s.name, _attrs(s)["qes.wait.outcome"]) for s in waits if "status" not in s.name
    ]
    assert signer_waits == [
        ("qes.wait consent", "expired"),
        ("qes.wait consent", "answered"),
        ("qes.wait passcode", "answered"),
        ("qes.wait passcode", "answered"),
    ]
    status_waits = [s for s in waits if s.name == "qes.wait status"]
    assert _attrs(status_waits[-1])["qes.wait.outcome"] == "signed"
    assert "signed" in _attrs(status_waits[-1])["qes.wait.targets"]
    step_ids = {s.context.span_id for s in steps if s.context}
    assert all(w.parent is not None and w.parent.span_id in step_ids for w in waits)

    # A span per HTTP attempt, token calls included, each under a step or a wait.
    http = [s for s in spans if s.kind is SpanKind.CLIENT]
    flow_ids = step_ids | {s.context.span_id for s in waits if s.context}
    assert all(s.parent is not None and s.parent.span_id in flow_ids for s in http)
    for span in http:
        attrs = _attrs(span)
        assert span.name == attrs["qes.operation"]
        assert all(key in attrs for key in SEMCONV_HTTP), span.name
        assert attrs["server.address"] == "127.0.0.1"
        assert attrs["qes.request_id"]
    tokens = [s for s in http if s.name == "create_token"]
    assert tokens
    assert _attrs(tokens[0])["url.template"] == "/v1/oauth2/token"
    status_reads = [s for s in http if s.name == "get_signature_status"]
    assert _attrs(status_reads[0])["url.template"] == "/v1/signatures/{id}/status"
    refused, retried = status_reads[0], status_reads[1]
    assert _attrs(refused)["http.response.status_code"] == 503
    assert _attrs(refused)["qes.retry.decision"] == "retry"
    assert _attrs(refused)["qes.retry.verdict"] == "retry"
    assert _attrs(refused)["error.type"] == "503"
    assert refused.status.status_code is StatusCode.ERROR
    assert _attrs(refused)["qes.attempt"] == 1
    assert "http.request.resend_count" not in _attrs(refused)
    assert (_attrs(retried)["qes.attempt"], _attrs(retried)["http.request.resend_count"]) == (2, 1)
    assert _attrs(retried)["qes.retry.decision"] == "none"
    assert refused.end_time is not None
    assert retried.start_time is not None
    assert refused.end_time <= retried.start_time  # the attempt's time, not the backoff's
    confirms = [s for s in http if s.name == "confirm_signature"]
    assert [_attrs(s)["http.response.status_code"] for s in confirms] == [409, 200]
    assert _attrs(confirms[0])["qes.retry.decision"] == "none"  # never replayed

    # The flow's events on its span: status changes, the deadline warning, the restart.
    events = [(e.name, dict(e.attributes or {})) for e in root.events]
    kinds = [name for name, _ in events]
    assert kinds.count("status_changed") >= 4
    assert kinds[-1] == "finished"
    (warning,) = [a for name, a in events if name == "deadline_approaching"]
    assert warning["qes.waiting_for"] == "consent"
    assert warning["qes.generation"] == 1
    (restarted,) = [a for name, a in events if name == "restarted"]
    assert restarted == {"qes.generation": 2, "qes.reason": "deadline_passed"}
    statuses = [a["qes.status"] for name, a in events if name == "status_changed"]
    assert statuses[-1] == "signed"

    # Metrics.
    duration = "http.client.request.duration"
    assert otel.total(duration, **{"qes.operation": "get_signature_status"}) == len(status_reads)
    assert otel.total(duration, **{"qes.status_class": "5xx"}) == 1
    assert otel.total(duration, **{"qes.status_class": "4xx"}) == 1  # the wrong passcode
    assert otel.total(duration, **{"qes.operation": "create_token"}) == len(tokens)
    assert otel.total("qes.flows.started") == 1
    assert otel.points("qes.flows.finished") == [({"qes.flow.outcome": "signed"}, 1)]
    assert otel.points("qes.flows.restarts") == [({"qes.restart.reason": "deadline_passed"}, 1)]
    waiting = {a["qes.waiting_for"]: v for a, v in otel.points("qes.flows.waiting")}
    assert waiting == {"status": 0, "consent": 0, "passcode": 0}

    # OpenTelemetry warns in the log about an invalid attribute or a late one: none here.
    assert [r.getMessage() for r in captured_logs if r.name.startswith("opentelemetry")] == []


async def test_flows_waiting_counts_the_flows_waiting_now(otel: Telemetry, tmp_path: Path) -> None:
    asked, go_on = asyncio.Event(), asyncio.Event()

    async def consent(request: ConsentRequest) -> bool:
        asked.set()
        await go_on.wait()
        return True

    async with world(tmp_path) as w:
        signer = CallbackSigner(
            consent=consent, passcode=lambda r: w.sandbox.latest_passcode(r.signature_id)
        )
        run = asyncio.create_task(w.flow(signer=signer).run())
        await asyncio.wait_for(asked.wait(), 10)
        during = {a["qes.waiting_for"]: v for a, v in otel.points("qes.flows.waiting")}
        go_on.set()
        result = await run
    assert result.outcome is FlowOutcome.SIGNED
    assert during["consent"] == 1
    after = {a["qes.waiting_for"]: v for a, v in otel.points("qes.flows.waiting")}
    assert after["consent"] == 0


async def test_a_lost_approval_gives_up_and_its_settling_wait_times_out_without_a_fault(
    otel: Telemetry, tmp_path: Path
) -> None:
    async with world(tmp_path) as w:
        w.sandbox.script_faults(["drop_before"], route="approve_documents")
        result = await w.flow().run()
    assert result.outcome is FlowOutcome.SIGNED
    lost, sent = otel.spans("approve_documents")
    assert _attrs(lost)["qes.retry.decision"] == "give_up"  # never replayed
    assert _attrs(lost)["qes.retry.verdict"] == "unknown"
    assert _attrs(lost)["error.type"].startswith("aiohttp.")
    assert _attrs(sent)["http.response.status_code"] == 200
    settling = [
        s for s in otel.spans("qes.wait status") if _attrs(s)["qes.wait.outcome"] == "timeout"
    ]
    assert len(settling) == 1
    assert settling[0].status.status_code is StatusCode.UNSET
    assert "error.type" not in _attrs(settling[0])
    assert _attrs(settling[0])["qes.wait.targets"] == ("confirmation_required",)
    (resync,) = otel.spans("qes.step resync")  # nested in the approve step that lost it
    assert resync.parent is not None
    (approve, _) = otel.spans("qes.step approve")
    assert approve.context is not None
    assert resync.parent.span_id == approve.context.span_id


async def test_a_failed_flow_ends_its_span_with_the_outcome_and_error(
    otel: Telemetry, tmp_path: Path
) -> None:
    async with world(tmp_path, {"client-1": IdentityCase(kyc_fail_at="approval")}) as w:
        with pytest.raises(KYCRequiredError):
            await w.flow().run()
    (root,) = otel.spans("qes.flow")
    assert _attrs(root)["qes.flow.outcome"] == "kyc_required"
    assert _attrs(root)["error.type"] == "qes_async._core.errors.KYCRequiredError"
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "KYCRequiredError"  # the class, never the message
    assert otel.points("qes.flows.finished") == [({"qes.flow.outcome": "kyc_required"}, 1)]


async def test_a_cancelled_flow_ends_its_span_as_cancelled(otel: Telemetry, tmp_path: Path) -> None:
    asked = asyncio.Event()

    async def consent(request: ConsentRequest) -> bool:
        asked.set()
        await asyncio.Event().wait()  # never answers
        return True

    async with world(tmp_path) as w:
        signer = CallbackSigner(consent=consent, passcode=lambda r: "")
        run = asyncio.create_task(w.flow(signer=signer).run())
        await asyncio.wait_for(asked.wait(), 10)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    (root,) = otel.spans("qes.flow")
    assert _attrs(root)["qes.flow.outcome"] == "cancelled"
    assert _attrs(root)["error.type"] == "asyncio.exceptions.CancelledError"
    (consenting,) = otel.spans("qes.wait consent")
    assert _attrs(consenting)["qes.wait.outcome"] == "cancelled"
    waiting = {a["qes.waiting_for"]: v for a, v in otel.points("qes.flows.waiting")}
    assert waiting["consent"] == 0
    assert otel.points("qes.flows.finished") == [({"qes.flow.outcome": "cancelled"}, 1)]


async def test_a_flow_refused_before_it_starts_is_counted_as_not_started(
    otel: Telemetry, tmp_path: Path
) -> None:
    async with world(tmp_path) as w:
        with pytest.raises(Exception, match="mobile"):
            await w.flow(mobile_number="0612").run()
    (root,) = otel.spans("qes.flow")
    assert _attrs(root)["qes.flow.outcome"] == "not_started"
    assert otel.spans() == [root]  # nothing was sent


# ---------------------------------------------------------------------- HTTP attempts


async def _drop(request: web.Request) -> web.StreamResponse:
    await request.read()
    assert request.transport is not None
    request.transport.close()
    return web.Response()


def _status(sig: str) -> web.Response:
    return web.json_response({"signatureId": sig, "status": "pending"})


async def test_a_lost_answer_is_an_error_span_then_a_retry(
    otel: Telemetry, fake_api: FakeAPI
) -> None:
    answers = iter([_drop, _drop])  # aiohttp itself retries once on a reused connection

    async def handler(request: web.Request) -> web.StreamResponse:
        drop = next(answers, None)
        return await drop(request) if drop else _status("sig-1")

    fake_api.add("GET", "/v1/signatures/{id}/status", handler)
    async with fake_api.client() as client:
        await client.get_signature_status("sig-1")
    token, lost, answered = otel.spans()
    assert token.name == "create_token"
    assert _attrs(token)["http.response.status_code"] == 200
    assert "error.type" not in _attrs(token)
    assert _attrs(lost)["error.type"] == "aiohttp.client_exceptions.ServerDisconnectedError"
    assert "http.response.status_code" not in _attrs(lost)
    assert (_attrs(lost)["qes.retry.decision"], _attrs(lost)["qes.retry.verdict"]) == (
        "retry",
        "retry",
    )
    assert _attrs(answered)["qes.attempt"] == 2
    assert fake_api.sleeps  # it did wait between the two
    assert otel.total("http.client.request.duration", **{"qes.status_class": "error"}) == 1


async def test_an_unreachable_service_gives_up_and_says_so(otel: Telemetry) -> None:
    from qes_async import QESClient, RetryPolicy

    async def no_sleep(seconds: float) -> None:
        return None

    client = QESClient(
        "id",
        CLIENT_SECRET,
        base_url="http://127.0.0.1:9",
        retry=RetryPolicy(attempts=2, jitter=None),
        sleep=no_sleep,
    )
    register_secret(CLIENT_SECRET)
    async with client:
        with pytest.raises(RequestNotSentError):
            await client.get_signature_status("sig-1")
    spans = otel.spans()
    assert [s.name for s in spans] == ["create_token", "create_token"]
    assert [_attrs(s)["qes.retry.decision"] for s in spans] == ["retry", "give_up"]
    assert all(_attrs(s)["server.port"] == 9 for s in spans)


async def test_a_revoked_token_is_a_reauth_decision(otel: Telemetry, fake_api: FakeAPI) -> None:
    calls = 0

    def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response({"code": "unauthorized"}, status=401)
        return _status("sig-1")

    fake_api.add("GET", "/v1/signatures/{id}/status", handler)
    async with fake_api.client() as client:
        await client.get_signature_status("sig-1")
    names = [(s.name, _attrs(s).get("qes.retry.decision")) for s in otel.spans()]
    assert names == [
        ("create_token", "none"),
        ("get_signature_status", "reauth"),
        ("create_token", "none"),
        ("get_signature_status", "none"),
    ]


async def test_a_call_cancelled_in_its_backoff_still_ends_its_span(
    otel: Telemetry, fake_api: FakeAPI
) -> None:
    waiting = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    fake_api.add(
        "GET",
        "/v1/signatures/{id}/status",
        lambda r: web.json_response({"code": "down"}, status=503),
    )
    async with fake_api.client(sleep=slow_sleep) as client:
        call = asyncio.create_task(client.get_signature_status("sig-1"))
        await asyncio.wait_for(waiting.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    refused = otel.spans("get_signature_status")
    assert [_attrs(s)["qes.retry.decision"] for s in refused] == ["cancelled"]


async def test_a_request_id_echoing_a_secret_is_cut(otel: Telemetry, fake_api: FakeAPI) -> None:
    def echo(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].split()[-1]
        headers = {"X-Request-Id": f"req-{token}-{CLIENT_SECRET}"}
        return web.json_response({"code": "bad"}, status=400, headers=headers)

    fake_api.add("GET", "/v1/signatures/{id}/status", echo)
    # Only the exported span is under test: the transport's DEBUG line (and the error's
    # message) show the request id as received, so the debug log is left off here.
    logging.getLogger("qes_async").setLevel(logging.INFO)
    async with fake_api.client() as client:
        with pytest.raises(Exception, match="400"):
            await client.get_signature_status("sig-1")
    (span,) = otel.spans("get_signature_status")
    assert _attrs(span)["qes.request_id"] == "req-***-***"
    assert _attrs(span)["qes.retry.decision"] == "none"  # a 400 is final


# --------------------------------------------------------------------------- webhooks


def test_webhooks_received_and_refused_are_counted(otel: Telemetry) -> None:
    password = "hook-password-7c2e"
    register_secret(password)
    receiver = WebhookReceiver(WebhookDispatcher(clock=FakeClock()), BasicAuth("fq", password))
    good = {"Authorization": "Basic " + base64.b64encode(f"fq:{password}".encode()).decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"fq:nope-nope").decode()}
    json_type = {"content-type": "application/json"}
    body = json.dumps({"signatureId": "sig-1", "status": "signed"}).encode()
    assert (
        receiver.handle("POST", "/fourthline/qes/sig-1", {**good, **json_type}, body).status == 204
    )
    assert (
        receiver.handle("POST", "/fourthline/qes/sig-1", {**bad, **json_type}, body).status == 401
    )
    assert (
        receiver.handle("POST", "/fourthline/qes/sig-1", {**good, **json_type}, b"{").status == 400
    )
    assert otel.total("qes.webhooks.received") == 3
    refused = sorted(
        (a["qes.webhook.reason"], a["http.response.status_code"], v)
        for a, v in otel.points("qes.webhooks.refused")
    )
    assert refused == [("malformed_json", 400, 1), ("unauthorized", 401, 1)]


# ------------------------------------------------------------------------ on and off


async def test_nothing_is_recorded_once_uninstrumented(otel: Telemetry, fake_api: FakeAPI) -> None:
    fake_api.add("GET", "/v1/signatures/{id}/status", lambda r: _status("sig-1"))
    qes_async.otel.uninstrument()
    assert not qes_async.otel.is_instrumented()
    assert _telemetry.hook is None
    async with fake_api.client() as client:
        await client.get_signature_status("sig-1")
    assert otel.spans() == []
    assert otel.points("http.client.request.duration") == []
    qes_async.otel.instrument(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )
    assert qes_async.otel.is_instrumented()


def test_instrument_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "qes_async._runtime.otel", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(qes_async.otel.TelemetryUnavailableError, match=r"qes-async\[otel\]"):
        qes_async.otel.instrument()
    assert not qes_async.otel.is_instrumented()
    assert isinstance(qes_async.otel.TelemetryUnavailableError("x"), ImportError)


def test_the_leak_scan_reads_span_attributes_events_and_metric_attributes(
    otel: Telemetry,
) -> None:
    # The scan must be able to fail: a planted value shows in its texts wherever it went.
    tracer = otel.tracer_provider.get_tracer("planted")
    with tracer.start_as_current_span("s", attributes={"a": ["x", "planted-in-a-list"]}) as span:
        span.add_event("e", {"b": "planted-in-an-event"})
        span.set_status(StatusCode.ERROR, "planted-in-a-status")
    meter = otel.meter_provider.get_meter("planted")
    meter.create_counter("c").add(1, {"c": "planted-in-a-metric"})
    texts = "\n".join(otel.texts())
    for where in ("a-list", "an-event", "a-status", "a-metric"):
        assert f"planted-in-{where}" in texts
