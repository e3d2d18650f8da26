"""Control endpoints under ``/_sandbox/``, for standalone use (curl, other languages).

They need no token (the sandbox serves loopback only) and are not in the request log.
:data:`CONTROL_ENDPOINTS` is the one list of them: the routes are registered from it, and
``GET /_sandbox/`` answers it as a JSON index (method, path, what it does, body fields), so
the index cannot miss an endpoint or list one that is not served.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._faults import HTTP_FAULTS, WEBHOOK_FAULTS
from ._model import ApiRefusal, ExtractedDetails, IdentityCase, bad_request
from ._requests import parse_json_object
from ._signing import MissingExtraError

if TYPE_CHECKING:
    from ._server import SandboxServer

__all__ = [
    "CONTROL_ENDPOINTS",
    "CONTROL_PREFIX",
    "ControlEndpoint",
    "ControlHandlers",
    "case_from_json",
    "control_index",
]

CONTROL_PREFIX = "/_sandbox/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
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
PEM_TYPE = "application/x-pem-file"


@attrs.frozen
class ControlEndpoint:
    """One control endpoint: ``method`` and ``path`` (under :data:`CONTROL_PREFIX`), what
    it does, and its JSON body's fields as ``(name, description)`` pairs."""

    method: str
    path: str
    does: str
    body: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, Any]:
        """The index entry: ``{"method", "path", "does", "body": {field: description}}``."""
        return {
            "method": self.method,
            "path": CONTROL_PREFIX + self.path,
            "does": self.does,
            "body": dict(self.body),
        }


_ROUTE = "an operation name (create_workflow, get_signature_status, ...); omitted: every route"
_HTTP_FAULT_BODY = (
    ("kind", "required: " + ", ".join(HTTP_FAULTS)),
    ("route", _ROUTE),
    ("rate", "probability 0..1 that a call is hit (default 1)"),
    ("times", "hit at most this many calls (default: no limit)"),
    ("status", "the 5xx status of a server_error (default 503)"),
    ("retry_after", "the Retry-After seconds of a rate_limit (default 1)"),
    ("delay", "real seconds a slow or slow_answer call waits (default 0.2)"),
)
_WEBHOOK_FAULT_BODY = (
    ("kind", "required: " + ", ".join(WEBHOOK_FAULTS)),
    ("route", "only webhooks carrying this status (pending, signed, ...); omitted: all"),
    ("rate", "probability 0..1 that a webhook is hit (default 1)"),
    ("times", "hit at most this many webhooks (default: no limit)"),
    ("delay", "clock seconds a delay-ed webhook is held (default 0.2)"),
)
_CASE_BODY = (
    ("clientReference", "required: the client reference workflows will be created with"),
    ("firstName", "given name in the signing certificate (default Jane)"),
    ("lastName", "surname in the signing certificate (default Doe)"),
    ("idDocumentNumber", "ID document number in the certificate (default NX1234567)"),
    ("caseStatus", "new, pending, completed (default) or rejected"),
    ("riskScore", "200 to 400 is eligible; 500 is refused (default 300)"),
    ("deviceModel", "the device the identity case was made with (default iPhone 15)"),
    ("signingDeviceModel", "the device signing now; a different one asks for a selfie"),
    ("caseAgeHours", "age of the identity case; over 24 asks for a selfie (default 1)"),
    ("flowKind", "completed (default) or pending_verification"),
    ("qtsp", "infocert (default: the contract is a PDF) or namirial (204)"),
    (
        "extracted",
        '{"firstName", "lastName", "idDocumentNumber"} read from the ID document in the '
        "pending_verification flow; differing details end in invalid_signature",
    ),
    ("kycFailAt", "mobile, approval, confirmation or verification: that step ends in kyc_required"),
    ("errorIn", "a status that, once entered, turns into error"),
    ("errorRecoversAfter", "seconds until that error recovers; null: never (default 60)"),
    ("verificationSeconds", "how long pending_verification lasts (default 0)"),
)
_WEBHOOKS_BODY = (
    ("url", "the base URL, to which the signature id is appended; null or omitted: off"),
    ("basic", '{"username", "password"}: HTTP Basic on each delivery'),
    (
        "bearer",
        '{"authUrl", "username", "password"}: first fetch a token from authUrl with these '
        "credentials (client-credentials grant), then send it as Bearer; not with basic",
    ),
)

#: Every control endpoint, in the order of the index.
CONTROL_ENDPOINTS: tuple[ControlEndpoint, ...] = (
    ControlEndpoint("GET", "", "this index of the control endpoints"),
    ControlEndpoint(
        "GET", "ca.pem", "the PEM certificate of the CA that signs documents (trust root)"
    ),
    ControlEndpoint("GET", "sms", "the SMS outbox, passcodes included"),
    ControlEndpoint("GET", "sms/{id}/latest", 'the last passcode sent: {"passcode"}'),
    ControlEndpoint("GET", "clock", 'the sandbox time: {"time", "now", "fake"}'),
    ControlEndpoint(
        "POST",
        "clock/advance",
        "move a fake clock forward, firing deadlines (--fake-clock only)",
        (("seconds", "required: a number >= 0"),),
    ),
    ControlEndpoint("POST", "clients", "add the identity case of a client reference", _CASE_BODY),
    ControlEndpoint("POST", "faults", "add an HTTP fault rule", _HTTP_FAULT_BODY),
    ControlEndpoint(
        "POST",
        "faults/script",
        "hit the next calls with these faults, in order",
        (
            ("steps", 'required: a list of HTTP fault kinds, "ok" (or null) for no fault'),
            ("route", _ROUTE),
        ),
    ),
    ControlEndpoint("DELETE", "faults", "remove every HTTP and webhook fault"),
    ControlEndpoint("POST", "webhook-faults", "add a webhook fault rule", _WEBHOOK_FAULT_BODY),
    ControlEndpoint(
        "PUT", "webhooks", "set (or turn off) where status changes are sent", _WEBHOOKS_BODY
    ),
    ControlEndpoint("GET", "webhooks/deliveries", "every webhook delivery attempt and fault"),
    ControlEndpoint("POST", "tokens/revoke", "revoke every token issued (the next call gets 401)"),
    ControlEndpoint("GET", "requests", "the request log of the API calls"),
    ControlEndpoint("GET", "signatures/{id}", "a signature's status, deadlines and passcode tries"),
)


def control_index() -> dict[str, Any]:
    """The JSON answer of ``GET /_sandbox/``."""
    return {
        "about": "qes_async sandbox control endpoints: no token needed, not in the request log",
        "endpoints": [endpoint.describe() for endpoint in CONTROL_ENDPOINTS],
    }


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


class ControlHandlers:
    """The handlers of the control endpoints, bound to one sandbox (as
    :class:`~qes_async.sandbox._api.ApiHandlers` are to one service)."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox

    def add_routes(self, app: web.Application) -> None:
        """Register every endpoint of the index under :data:`CONTROL_PREFIX`.

        Raises:
            RuntimeError: a handler the index does not list, or an entry without one (a
                sandbox bug, caught by any test that starts a sandbox).
        """
        handlers = self._handlers()
        for endpoint in CONTROL_ENDPOINTS:
            handler = handlers.pop((endpoint.method, endpoint.path))
            if endpoint.method == "GET":
                app.router.add_get(CONTROL_PREFIX + endpoint.path, handler)  # HEAD too
            else:
                app.router.add_route(endpoint.method, CONTROL_PREFIX + endpoint.path, handler)
        if handlers:
            raise RuntimeError(f"control endpoints missing from the index: {sorted(handlers)}")

    def _handlers(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", ""): self.index,
            ("GET", "ca.pem"): self.ca_pem,
            ("GET", "sms"): self.sms,
            ("GET", "sms/{id}/latest"): self.latest,
            ("GET", "clock"): self.clock,
            ("POST", "clock/advance"): self.advance,
            ("POST", "clients"): self.clients,
            ("POST", "faults"): self.add_fault,
            ("POST", "faults/script"): self.script,
            ("DELETE", "faults"): self.clear,
            ("POST", "webhook-faults"): self.add_webhook_fault,
            ("PUT", "webhooks"): self.webhooks,
            ("GET", "webhooks/deliveries"): self.deliveries,
            ("POST", "tokens/revoke"): self.revoke,
            ("GET", "requests"): self.requests,
            ("GET", "signatures/{id}"): self.signature,
        }

    async def index(self, request: web.Request) -> web.Response:
        return _ok(control_index())

    async def ca_pem(self, request: web.Request) -> web.Response:
        try:
            pem = self.sandbox.ca_pem
        except MissingExtraError as exc:
            raise ApiRefusal(501, "missing_extra", str(exc)) from None
        return web.Response(
            body=pem,
            content_type=PEM_TYPE,
            headers={"Content-Disposition": 'attachment; filename="sandbox-ca.pem"'},
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return parse_json_object(request.content_type, await request.read())

    async def sms(self, request: web.Request) -> web.Response:
        return _ok([_record(r) for r in self.sandbox.sms_outbox])

    async def latest(self, request: web.Request) -> web.Response:
        try:
            return _ok({"passcode": self.sandbox.latest_passcode(request.match_info["id"])})
        except LookupError:
            raise ApiRefusal(404, "no_passcode", "no passcode sent for this signature") from None

    async def clock(self, request: web.Request) -> web.Response:
        return _ok(_clock_body(self.sandbox))

    async def advance(self, request: web.Request) -> web.Response:
        seconds = (await self._body(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise bad_request("seconds must be a number >= 0", "seconds", code="invalid_field")
        try:
            self.sandbox.advance(float(seconds))
        except TypeError:
            raise ApiRefusal(409, "real_clock", "this sandbox runs on the real clock") from None
        return _ok(_clock_body(self.sandbox))

    async def clients(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        reference = data.get("clientReference")
        if not isinstance(reference, str) or not reference:
            raise bad_request(
                "clientReference is required", "clientReference", code="missing_field"
            )
        self.sandbox.add_client(reference, case_from_json(data))
        return _ok()

    async def add_fault(self, request: web.Request) -> web.Response:
        return await self._add_fault(request, "http")

    async def add_webhook_fault(self, request: web.Request) -> web.Response:
        return await self._add_fault(request, "webhooks")

    async def _add_fault(self, request: web.Request, plan_name: str) -> web.Response:
        data = await self._body(request)
        kind = data.pop("kind", None)
        if not isinstance(kind, str) or set(data) - _FAULT_OPTIONS:
            raise bad_request("kind is required; options: " + ", ".join(sorted(_FAULT_OPTIONS)))
        try:
            if plan_name == "http":
                self.sandbox.inject_fault(kind, **data)
            else:
                self.sandbox.webhook_faults.add(kind, **data)
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc), code="invalid_field") from None
        return _ok()

    async def script(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        steps, route = data.get("steps"), data.get("route")
        if not isinstance(steps, list) or not all(isinstance(s, (str, type(None))) for s in steps):
            raise bad_request("steps must be a list of fault kinds or ok", "steps")
        try:
            self.sandbox.script_faults(steps, route=route)
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc), code="invalid_field") from None
        return _ok()

    async def clear(self, request: web.Request) -> web.Response:
        self.sandbox.faults.clear()
        self.sandbox.webhook_faults.clear()
        return _ok()

    async def webhooks(self, request: web.Request) -> web.Response:
        data = await self._body(request)
        unknown = set(data) - {"url", "basic", "bearer"}
        if unknown:
            raise bad_request(
                f"unknown fields: {', '.join(sorted(unknown))}; known: url, basic, bearer",
                code="invalid_field",
            )
        url = data.get("url")
        if url is not None and not isinstance(url, str):
            raise bad_request(
                "url must be a string, or null to turn webhooks off", "url", code="invalid_field"
            )
        basic = _credentials(data, "basic", ("username", "password"))
        bearer = _credentials(data, "bearer", ("authUrl", "username", "password"))
        try:
            self.sandbox.configure_webhooks(
                url,
                basic=(basic[0], basic[1]) if basic else None,
                bearer=(bearer[0], bearer[1], bearer[2]) if bearer else None,
            )
        except (TypeError, ValueError) as exc:
            raise bad_request(f"invalid webhook settings: {exc}", code="invalid_field") from None
        return _ok()

    async def deliveries(self, request: web.Request) -> web.Response:
        return _ok([_record(d) for d in self.sandbox.webhook_deliveries])

    async def revoke(self, request: web.Request) -> web.Response:
        self.sandbox.revoke_tokens()
        return _ok()

    async def requests(self, request: web.Request) -> web.Response:
        return _ok([_record(r) for r in self.sandbox.request_log])

    async def signature(self, request: web.Request) -> web.Response:
        sig = self.sandbox.service.signatures.get(request.match_info["id"])
        if sig is None:
            raise ApiRefusal(404, "signature_not_found", "no signature with this id")
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


def _credentials(data: dict[str, Any], name: str, keys: tuple[str, ...]) -> list[str] | None:
    """The string values of ``data[name]``, an object with exactly ``keys`` (or None)."""
    value = data.get(name)
    if value is None:
        return None
    shape = "{" + ", ".join(f'"{k}": "..."' for k in keys) + "}"
    if not isinstance(value, dict) or set(value) != set(keys):
        raise bad_request(f"{name} must be an object {shape}", name, code="invalid_field")
    if not all(isinstance(value[k], str) for k in keys):
        raise bad_request(f"{name}: {', '.join(keys)} must be strings", name, code="invalid_field")
    return [value[k] for k in keys]


def _record(value: Any) -> dict[str, Any]:
    data: dict[str, Any] = attrs.asdict(value)
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


def _clock_body(sandbox: SandboxServer) -> dict[str, Any]:
    from .._runtime.clock import FakeClock

    return {
        "time": sandbox.clock.time(),
        "now": sandbox.clock.now().isoformat(),
        "fake": isinstance(sandbox.clock, FakeClock),
    }
