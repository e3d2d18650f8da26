"""Control endpoints under ``/_sandbox/``, for standalone use (curl, other languages).

They need no token (the sandbox serves loopback only) and are not in the request log.

==========================================  ==============================================
``GET /_sandbox/sms``                       the SMS outbox (passcodes included)
``GET /_sandbox/sms/{id}/latest``           ``{"passcode"}`` last sent for a signature
``GET /_sandbox/clock``                     ``{"time", "now", "fake"}``
``POST /_sandbox/clock/advance``            ``{"seconds": 7200}`` (fake clock only)
``POST /_sandbox/clients``                  ``{"clientReference", ...IdentityCase fields}``
``POST /_sandbox/faults``                   ``{"kind", "route"?, "rate"?, "times"?, ...}``
``POST /_sandbox/faults/script``            ``{"steps": ["rate_limit", "ok"], "route"?}``
``DELETE /_sandbox/faults``                 remove HTTP and webhook faults
``POST /_sandbox/webhook-faults``           as ``/faults``, kinds drop/duplicate/...
``PUT /_sandbox/webhooks``                  ``{"url", "basic"?: {..}, "bearer"?: {..}}``
``GET /_sandbox/webhooks/deliveries``       every webhook delivery attempt
``POST /_sandbox/tokens/revoke``            revoke every token
``GET /_sandbox/requests``                  the request log
``GET /_sandbox/signatures/{id}``           the signature's status and deadlines
==========================================  ==============================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._model import ExtractedDetails, IdentityCase, ServiceError, bad_request
from ._requests import parse_json_object

if TYPE_CHECKING:
    from ._server import SandboxServer

__all__ = ["CONTROL_PREFIX", "add_control_routes", "case_from_json"]

CONTROL_PREFIX = "/_sandbox/"
_CASE_FIELDS = {
    "firstName": "first_name",
    "lastName": "last_name",
    "idDocumentNumber": "id_document_number",
    "caseStatus": "case_status",
    "riskScore": "risk_score",
    "deviceModel": "device_model",
    "signingDeviceModel": "signing_device_model",
    "caseAgeHours": "case_age_hours",
    "flowKind": "flow_kind",
    "qtsp": "qtsp",
    "kycFailAt": "kyc_fail_at",
    "errorIn": "error_in",
    "errorRecoversAfter": "error_recovers_after",
    "verificationSeconds": "verification_seconds",
}
_FAULT_OPTIONS = {"route", "rate", "times", "status", "retry_after", "delay"}


def case_from_json(body: dict[str, Any]) -> IdentityCase:
    """An :class:`IdentityCase` from camelCase JSON; 400 for unknown or bad fields."""
    unknown = set(body) - set(_CASE_FIELDS) - {"clientReference", "extracted"}
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(sorted(unknown))}", code="invalid_field")
    kwargs: dict[str, Any] = {_CASE_FIELDS[k]: v for k, v in body.items() if k in _CASE_FIELDS}
    extracted = body.get("extracted")
    try:
        if extracted is not None:
            kwargs["extracted"] = ExtractedDetails(
                extracted["firstName"], extracted["lastName"], extracted["idDocumentNumber"]
            )
        return IdentityCase(**kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        raise bad_request(f"invalid identity case: {exc}", code="invalid_field") from None


def _ok(body: Any = None) -> web.Response:
    return web.json_response({"ok": True} if body is None else body)


def add_control_routes(app: web.Application, sandbox: SandboxServer) -> None:
    """Register the control endpoints of ``sandbox`` on ``app``."""
    p = CONTROL_PREFIX

    async def body(request: web.Request) -> dict[str, Any]:
        return parse_json_object(request.content_type, await request.read())

    async def sms(request: web.Request) -> web.Response:
        return _ok([_record(r) for r in sandbox.sms_outbox])

    async def latest(request: web.Request) -> web.Response:
        try:
            return _ok({"passcode": sandbox.latest_passcode(request.match_info["id"])})
        except LookupError:
            raise ServiceError(404, "no_passcode", "no passcode sent for this signature") from None

    async def clock(request: web.Request) -> web.Response:
        return _ok(_clock_body(sandbox))

    async def advance(request: web.Request) -> web.Response:
        seconds = (await body(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise bad_request("seconds must be a number >= 0", "seconds", code="invalid_field")
        try:
            sandbox.advance(float(seconds))
        except TypeError:
            raise ServiceError(409, "real_clock", "this sandbox runs on the real clock") from None
        return _ok(_clock_body(sandbox))

    async def clients(request: web.Request) -> web.Response:
        data = await body(request)
        reference = data.get("clientReference")
        if not isinstance(reference, str) or not reference:
            raise bad_request(
                "clientReference is required", "clientReference", code="missing_field"
            )
        sandbox.add_client(reference, case_from_json(data))
        return _ok()

    def fault_adder(plan_name: str) -> Any:
        async def add(request: web.Request) -> web.Response:
            data = await body(request)
            kind = data.pop("kind", None)
            if not isinstance(kind, str) or set(data) - _FAULT_OPTIONS:
                raise bad_request("kind is required; options: " + ", ".join(sorted(_FAULT_OPTIONS)))
            try:
                if plan_name == "http":
                    sandbox.inject_fault(kind, **data)
                else:
                    sandbox.webhook_faults.add(kind, **data)
            except (TypeError, ValueError) as exc:
                raise bad_request(str(exc), code="invalid_field") from None
            return _ok()

        return add

    async def script(request: web.Request) -> web.Response:
        data = await body(request)
        steps, route = data.get("steps"), data.get("route")
        if not isinstance(steps, list) or not all(isinstance(s, (str, type(None))) for s in steps):
            raise bad_request("steps must be a list of fault kinds or ok", "steps")
        try:
            sandbox.script_faults(steps, route=route)
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc), code="invalid_field") from None
        return _ok()

    async def clear(request: web.Request) -> web.Response:
        sandbox.faults.clear()
        sandbox.webhook_faults.clear()
        return _ok()

    async def webhooks(request: web.Request) -> web.Response:
        data = await body(request)
        try:
            basic, bearer = data.get("basic"), data.get("bearer")
            sandbox.configure_webhooks(
                data.get("url"),
                basic=(basic["username"], basic["password"]) if basic else None,
                bearer=(bearer["authUrl"], bearer["username"], bearer["password"])
                if bearer
                else None,
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise bad_request(f"invalid webhook settings: {exc}", code="invalid_field") from None
        return _ok()

    async def deliveries(request: web.Request) -> web.Response:
        return _ok([_record(d) for d in sandbox.webhook_deliveries])

    async def revoke(request: web.Request) -> web.Response:
        sandbox.revoke_tokens()
        return _ok()

    async def requests(request: web.Request) -> web.Response:
        return _ok([_record(r) for r in sandbox.request_log])

    async def signature(request: web.Request) -> web.Response:
        sig = sandbox.service.signatures.get(request.match_info["id"])
        if sig is None:
            raise ServiceError(404, "signature_not_found", "no signature with this id")
        return _ok(
            {
                **sig.status_body(),
                "clientReference": sig.client_reference,
                "consentDeadline": sig.consent_deadline,
                "confirmationDeadline": sig.confirmation_deadline,
                "wrongPasscodes": sig.wrong_passcodes,
                "spent": sig.spent,
            }
        )

    app.router.add_get(p + "sms", sms)
    app.router.add_get(p + "sms/{id}/latest", latest)
    app.router.add_get(p + "clock", clock)
    app.router.add_post(p + "clock/advance", advance)
    app.router.add_post(p + "clients", clients)
    app.router.add_post(p + "faults", fault_adder("http"))
    app.router.add_post(p + "faults/script", script)
    app.router.add_delete(p + "faults", clear)
    app.router.add_post(p + "webhook-faults", fault_adder("webhooks"))
    app.router.add_put(p + "webhooks", webhooks)
    app.router.add_get(p + "webhooks/deliveries", deliveries)
    app.router.add_post(p + "tokens/revoke", revoke)
    app.router.add_get(p + "requests", requests)
    app.router.add_get(p + "signatures/{id}", signature)


def _record(value: Any) -> dict[str, Any]:
    data: dict[str, Any] = attrs.asdict(value)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def _clock_body(sandbox: SandboxServer) -> dict[str, Any]:
    from .._clock import FakeClock

    return {
        "time": sandbox.clock.time(),
        "now": sandbox.clock.now().isoformat(),
        "fake": isinstance(sandbox.clock, FakeClock),
    }
