"""A faithful, stateful stand-in for the QES service, served on loopback.

``async with SandboxServer(clock=FakeClock()) as sandbox:`` serves the API contract at
``sandbox.url`` with ``sandbox.client_id``/``sandbox.client_secret``; read passcodes from
``sandbox.sms_outbox`` (or :meth:`SandboxServer.latest_passcode`), assert on
``sandbox.request_log``, shape clients with :class:`IdentityCase`, and inject faults.
PDF signing needs the ``qes-async[sandbox]`` extra.
"""

from __future__ import annotations

from ._faults import HTTP_FAULTS, WEBHOOK_FAULTS, Fault, FaultPlan
from ._model import (
    ExtractedDetails,
    IdentityCase,
    RequestRecord,
    SandboxTiming,
    SmsRecord,
)
from ._server import SandboxServer
from ._signing import MissingExtraError, SandboxCA, sandbox_ca
from ._webhooks import WebhookDelivery

__all__ = [
    "HTTP_FAULTS",
    "WEBHOOK_FAULTS",
    "ExtractedDetails",
    "Fault",
    "FaultPlan",
    "IdentityCase",
    "MissingExtraError",
    "RequestRecord",
    "SandboxCA",
    "SandboxServer",
    "SandboxTiming",
    "SmsRecord",
    "WebhookDelivery",
    "sandbox_ca",
]
