"""OpenTelemetry traces and metrics of the client, the flows and the webhook receiver.

Off until :func:`instrument` is called; it needs the ``otel`` extra
(``pip install 'qes-async[otel]'``, which brings ``opentelemetry-api`` only: the
application installs and configures the SDK and its exporters)::

    import qes_async.otel

    qes_async.otel.instrument()  # the global tracer and meter providers

Spans:

* one per HTTP attempt, the token call included: kind CLIENT, named by the operation
  (``get_signature_status``...), with ``http.request.method``, ``url.template``,
  ``server.address``, ``server.port``, ``http.response.status_code``, ``error.type``,
  ``http.request.resend_count``, ``qes.operation``, ``qes.attempt``, ``qes.request_id``
  and ``qes.retry.decision`` (``none``, ``retry``, ``reauth``, ``give_up``,
  ``cancelled``) with the policy's ``qes.retry.verdict``;
* ``qes.flow`` per :meth:`SignatureFlow.run <qes_async.SignatureFlow.run>`, with
  ``qes.flow.id``, ``qes.flow.resumed``, ``qes.signature.id``, ``qes.generation``,
  ``qes.flow.outcome``, ``qes.flow.restarts``, ``qes.restart.reasons``; every
  :class:`~qes_async.FlowEvent` (``status_changed``, ``deadline_approaching``,
  ``restarted``...) is an event of this span;
* under it ``qes.step <action>`` per step (``qes.step``, ``qes.step.next``,
  ``qes.generation.ended``, ``qes.restart.reason``) and ``qes.wait <what>`` per wait for
  a status or the signer (``qes.waiting_for``, ``qes.wait.targets``,
  ``qes.wait.outcome``); the attempts of a step are its children.

Metrics: ``http.client.request.duration`` (s, per attempt, by ``qes.operation`` and
``qes.status_class``), ``qes.flows.started``, ``qes.flows.finished`` (by
``qes.flow.outcome``), ``qes.flows.restarts`` (by ``qes.restart.reason``),
``qes.flows.waiting`` (up-down, by ``qes.waiting_for``), ``qes.webhooks.received`` and
``qes.webhooks.refused`` (by ``qes.webhook.reason``).

Never recorded: URLs, headers, bodies, the client secret, tokens, passcodes, mobile
numbers, document bytes, file paths or error messages (only exception class names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core.errors import QESError
from ._runtime import telemetry as _telemetry

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["TelemetryUnavailableError", "instrument", "is_instrumented", "uninstrument"]


class TelemetryUnavailableError(QESError, ImportError):
    """:func:`instrument` was called without ``opentelemetry-api`` installed."""

    advice = "Install the extra: pip install 'qes-async[otel]'."


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Turn on spans and metrics for every client, flow and receiver of this process.

    Args:
        tracer_provider: where spans go (default: OpenTelemetry's global provider; one
            set after this call is still used, through OpenTelemetry's proxy).
        meter_provider: where metrics go (default: the global one, likewise).

    Calling it again replaces the providers. Raises :class:`TelemetryUnavailableError`
    when ``opentelemetry-api`` is not installed.
    """
    try:
        from ._runtime.otel import Recorder
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise TelemetryUnavailableError(
            "qes_async.otel.instrument() needs opentelemetry-api, which is not installed"
        ) from None
    _telemetry.hook = Recorder(tracer_provider, meter_provider)


def uninstrument() -> None:
    """Turn telemetry off again (calls already running finish their spans)."""
    _telemetry.hook = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _telemetry.hook is not None
