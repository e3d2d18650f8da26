"""The OpenTelemetry recorder behind :mod:`qes_async.otel` (imports ``opentelemetry``).

Spans: one per HTTP attempt (CLIENT, named by the operation), one per flow run
(``qes.flow``) with a child per step (``qes.step <action>``) and per wait
(``qes.wait <what>``). Metrics: see :data:`METRICS`.

What goes in is chosen field by field, never copied wholesale: route templates, never
URLs; status codes and request ids, never headers or bodies; flow event fields by an
allow-list (no path, no hash, no number, no passcode). A span of an attempt that failed
stays open until the transport has decided whether to retry, and is ended at the instant
the attempt ended, so its duration is the attempt's and not the backoff's.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Collection
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__
from .._client.protocol import Request, Response
from .._client.retry import Verdict
from .._client.sending import Sender, _Failed
from .._client.transport import TransportError
from .._core.errors import WaitTimeoutError
from .._flow.events import FlowEvent
from .._flow.machine import RestartReason

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .._flow.driver import SignatureFlow

__all__ = ["METRICS", "Recorder"]

SCOPE = "qes_async"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
MAX_REQUEST_ID = 128  # a request id is the server's to choose: kept short

#: name -> (instrument kind, unit, description)
METRICS: dict[str, tuple[str, str, str]] = {
    "http.client.request.duration": (
        "histogram",
        "s",
        "Duration of each HTTP attempt, by qes.operation and qes.status_class.",
    ),
    "qes.flows.started": ("counter", "{flow}", "Flow runs started (qes.flow.resumed)."),
    "qes.flows.finished": ("counter", "{flow}", "Flow runs ended, by qes.flow.outcome."),
    "qes.flows.restarts": ("counter", "{restart}", "New workflows, by qes.restart.reason."),
    "qes.flows.waiting": (
        "updowncounter",
        "{flow}",
        "Flows waiting now, by qes.waiting_for (status, consent, passcode, selfie).",
    ),
    "qes.webhooks.received": (
        "counter",
        "{webhook}",
        "Webhook requests answered, by http.response.status_code.",
    ),
    "qes.webhooks.refused": (
        "counter",
        "{webhook}",
        "Webhook requests refused, by qes.webhook.reason.",
    ),
}
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

# FlowEvent field -> span event attribute; anything else (path, sha256) is left out.
_EVENT_FIELDS = {
    "signature_id": "qes.signature.id",
    "status": "qes.status",
    "waiting_for": "qes.waiting_for",
    "deadline": "qes.deadline",
    "reason": "qes.reason",
    "document_id": "qes.document.id",
    "validation": "qes.document.validation",
    "outcome": "qes.flow.outcome",
}
_RESTART_REASONS = frozenset(reason.value for reason in RestartReason)


class _Pending:
    """A failed or refused attempt's span, waiting for the retry decision."""

    __slots__ = ("end_ns", "span")

    def __init__(self, span: Span, end_ns: int) -> None:
        self.span, self.end_ns = span, end_ns


# Per task: the transport calls decide() right after the attempt, in the same task.
_PENDING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar(
    "qes_async_pending_attempt", default=None
)


def error_type(exc: BaseException) -> str:
    """The semantic conventions' ``error.type`` of an exception: its qualified class name."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def status_class(status: int | None) -> str:
    """``2xx``...``5xx``, or ``error`` when no answer came."""
    return f"{status // 100}xx" if status is not None else "error"


def _request_id(response: Response) -> str | None:
    """The answer's request id, short and printable; one echoing a secret is cut."""
    value = response.request_id
    if not value:
        return None
    value = value[:MAX_REQUEST_ID]
    if not value.isprintable():
        return None
    scrubber = response.scrubber
    if scrubber is not None and scrubber.holds(value):
        return scrubber.text(value)
    return value


class Recorder:
    """Makes the spans and records the metrics; installed as ``_telemetry.hook``."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider, SCHEMA_URL)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider, SCHEMA_URL)

        def describe(name: str) -> dict[str, str]:
            _, unit, description = METRICS[name]
            return {"name": name, "unit": unit, "description": description}

        self.duration = meter.create_histogram(
            **describe("http.client.request.duration"),
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.flows_started = meter.create_counter(**describe("qes.flows.started"))
        self.flows_finished = meter.create_counter(**describe("qes.flows.finished"))
        self.restarts = meter.create_counter(**describe("qes.flows.restarts"))
        self.flows_waiting = meter.create_up_down_counter(**describe("qes.flows.waiting"))
        self.webhooks_received = meter.create_counter(**describe("qes.webhooks.received"))
        self.webhooks_refused = meter.create_counter(**describe("qes.webhooks.refused"))

    # ------------------------------------------------------------------------- HTTP

    async def attempt(
        self,
        transport: Sender,
        request: Request,
        number: int,
        call: Awaitable[tuple[Response, Any]],
    ) -> tuple[Response, Any]:
        """Run one attempt (``call``) in its span and time it."""
        url = transport.base_url
        server = {"server.address": url.host or "", "server.port": url.port or 0}
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            **server,
            "qes.operation": request.operation,
            "qes.attempt": number,
        }
        template = getattr(transport.routes, request.operation, None)
        if isinstance(template, str):
            attributes["url.template"] = template
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        span = self.tracer.start_span(
            request.operation, kind=SpanKind.CLIENT, attributes=attributes
        )
        began = time.perf_counter()
        token = context.attach(trace.set_span_in_context(span))
        try:
            response, result = await call
        except BaseException as exc:
            end_ns = time.time_ns()
            context.detach(token)
            cause = exc.cause if isinstance(exc, _Failed) else exc
            if isinstance(cause, TransportError) and cause.__cause__ is not None:
                cause = cause.__cause__  # the HTTP library's own failure names the kind
            kind = error_type(cause)
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, type(cause).__name__))
            self._measure(request, began, server, None, kind)
            if isinstance(exc, _Failed):  # no answer: the transport decides on a retry next
                _PENDING.set(_Pending(span, end_ns))
            else:
                span.end(end_ns)
            raise
        end_ns = time.time_ns()
        context.detach(token)
        status = response.status
        found: dict[str, Any] = {"http.response.status_code": status}
        request_id = _request_id(response)
        if request_id is not None:
            found["qes.request_id"] = request_id
        refused = str(status) if status >= 400 else None
        if refused is not None:
            found["error.type"] = refused
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        self._measure(request, began, server, status, refused)
        if 200 <= status < 300:
            found["qes.retry.decision"] = "none"
            span.set_attributes(found)
            span.end(end_ns)
        else:
            span.set_attributes(found)
            _PENDING.set(_Pending(span, end_ns))
        return response, result

    def _measure(
        self,
        request: Request,
        began: float,
        server: dict[str, Any],
        status: int | None,
        kind: str | None,
    ) -> None:
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            **server,
            "qes.operation": request.operation,
            "qes.status_class": status_class(status),
        }
        if status is not None:
            attributes["http.response.status_code"] = status
        if kind is not None:
            attributes["error.type"] = kind
        self.duration.record(time.perf_counter() - began, attributes)

    async def decide(self, retrying: Awaitable[bool], retries: Any) -> bool:
        """Await the transport's decision and end the attempt's span with it."""
        pending = _PENDING.get()
        if pending is not None:
            _PENDING.set(None)
        decision = "cancelled"
        try:
            again = await retrying
            decision = _decision(again, retries.verdict)
            return again
        finally:
            if pending is not None:
                pending.span.set_attribute("qes.retry.decision", decision)
                if retries.verdict is not None:
                    pending.span.set_attribute("qes.retry.verdict", retries.verdict.value)
                pending.span.end(pending.end_ns)

    # ------------------------------------------------------------------------- flows

    def flow_started(self, flow: SignatureFlow) -> FlowTrace:
        """Open the run's ``qes.flow`` span (current until :meth:`FlowTrace.finish`)."""
        resumed = flow.state is not None
        self.flows_started.add(1, {"qes.flow.resumed": resumed})
        span = self.tracer.start_span(
            "qes.flow", attributes={"qes.flow.id": flow.flow_id, "qes.flow.resumed": resumed}
        )
        return FlowTrace(self, span, flow)

    # ---------------------------------------------------------------------- webhooks

    def webhook(self, status: int, reason: str) -> None:
        """Count one answered webhook request (and its refusal)."""
        self.webhooks_received.add(1, {"http.response.status_code": status})
        if status >= 300:
            self.webhooks_refused.add(
                1, {"qes.webhook.reason": reason, "http.response.status_code": status}
            )


def _decision(again: bool, verdict: Verdict | None) -> str:
    if again:
        return "reauth" if verdict is Verdict.REAUTH else "retry"
    return "none" if verdict is Verdict.DONE else "give_up"


class FlowTrace:
    """One run's spans: the run's own, and the step and wait spans under it."""

    def __init__(self, recorder: Recorder, span: Span, flow: SignatureFlow) -> None:
        self.recorder, self.span, self.flow = recorder, span, flow
        self._cancelled = False
        self._token = context.attach(trace.set_span_in_context(span))

    def step(self, name: str) -> _StepSpan:
        return _StepSpan(self, name)

    def wait(self, what: str, targets: Collection[object] = ()) -> _WaitSpan:
        return _WaitSpan(self, what, targets)

    def event(self, event: FlowEvent) -> None:
        """A flow event as an event of the run's span (its allowed fields only)."""
        attributes: dict[str, Any] = {"qes.generation": event.generation}
        for field, name in _EVENT_FIELDS.items():
            value = getattr(event, field)
            if value is not None:
                attributes[name] = value
        self.span.add_event(event.kind.value, attributes)
        if event.kind.value == "restarted":
            self.recorder.restarts.add(1, {"qes.restart.reason": event.reason or "unknown"})

    def generation_attributes(self) -> dict[str, Any]:
        state = self.flow.state
        if state is None or not state.generations:
            return {}
        gen = state.generations[-1]
        attributes: dict[str, Any] = {"qes.generation": gen.number}
        if gen.signature_id:
            attributes["qes.signature.id"] = gen.signature_id
        return attributes

    def failed(self, error: BaseException) -> None:
        """The run raised ``error`` (only its class is kept)."""
        self._cancelled = isinstance(error, asyncio.CancelledError)
        _set_error(self.span, error)

    def finish(self) -> None:
        """Set the run's outcome on its span, end it and count it."""
        flow, state = self.flow, self.flow.state
        if state is None:
            outcome = "not_started"  # refused before anything was stored or sent
        elif state.finished:
            outcome = state.outcome or "failed"
        elif self._cancelled:
            outcome = "cancelled"
        else:
            outcome = "stopped"  # resumable: the store keeps where it stood
        span = self.span
        span.set_attributes(self.generation_attributes())
        span.set_attribute("qes.flow.outcome", outcome)
        if state is not None:
            reasons = [g.reason for g in state.generations[1:] if g.reason]
            span.set_attribute("qes.flow.restarts", len(state.generations) - 1)
            if reasons:
                span.set_attribute("qes.restart.reasons", reasons)
        flow._trace = None
        context.detach(self._token)
        span.end()
        self.recorder.flows_finished.add(1, {"qes.flow.outcome": outcome})


def _set_error(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_attribute("error.type", error_type(error))
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


class _ChildSpan:
    """A span under the run's, current while its ``with`` block runs."""

    name = ""

    def __init__(self, owner: FlowTrace, attributes: dict[str, Any]) -> None:
        self.owner = owner
        self.span = owner.recorder.tracer.start_span(
            self.name, attributes={**attributes, **owner.generation_attributes()}
        )
        self._token: object = None

    def __enter__(self) -> _ChildSpan:
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, *exc_info: object) -> None:
        error = exc_info[1] if isinstance(exc_info[1], BaseException) else None
        try:
            _set_error(self.span, self.ended(error))
        finally:
            context.detach(self._token)  # type: ignore[arg-type]
            self.span.end()

    def ended(self, error: BaseException | None) -> BaseException | None:
        """Set what is known once the block ends; returns the error that marks the span
        failed (an outcome such as a wait's timeout does not)."""
        return error

    def outcome(self, value: str) -> None:
        return None


class _StepSpan(_ChildSpan):
    def __init__(self, owner: FlowTrace, step: str) -> None:
        self.name = f"qes.step {step}"
        state = owner.flow.state
        self._generation = (
            state.generations[-1] if state is not None and state.generations else None
        )
        self._ended_before = self._generation.ended if self._generation is not None else None
        super().__init__(owner, {"qes.step": step, "qes.flow.id": owner.flow.flow_id})

    def ended(self, error: BaseException | None) -> BaseException | None:
        span, gen, state = self.span, self._generation, self.owner.flow.state
        if state is not None:
            span.set_attribute("qes.step.next", state.step.value)
        if gen is None:
            return error
        if gen.signature_id:
            span.set_attribute("qes.signature.id", gen.signature_id)
        if gen.ended is not None and self._ended_before is None:
            span.set_attribute("qes.generation.ended", gen.ended)
            if gen.ended in _RESTART_REASONS:
                span.set_attribute("qes.restart.reason", gen.ended)
        return error


class _WaitSpan(_ChildSpan):
    def __init__(self, owner: FlowTrace, what: str, targets: Collection[object]) -> None:
        self.name = f"qes.wait {what}"
        self._what = {"qes.waiting_for": what}
        self._outcome: str | None = None
        attributes: dict[str, Any] = dict(self._what)
        if targets:
            attributes["qes.wait.targets"] = [str(getattr(t, "value", t)) for t in targets]
        super().__init__(owner, attributes)

    def __enter__(self) -> _WaitSpan:
        super().__enter__()
        self.owner.recorder.flows_waiting.add(1, self._what)
        return self

    def outcome(self, value: str) -> None:
        self._outcome = value

    def ended(self, error: BaseException | None) -> BaseException | None:
        self.owner.recorder.flows_waiting.add(-1, self._what)
        if isinstance(error, WaitTimeoutError):
            self._outcome, error = "timeout", None  # an outcome the flow handles, not a fault
        elif isinstance(error, asyncio.CancelledError):
            self._outcome = "cancelled"
        elif error is not None:
            self._outcome = "error"
        if self._outcome is not None:
            self.span.set_attribute("qes.wait.outcome", self._outcome)
        return error
