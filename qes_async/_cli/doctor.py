"""``qes-async doctor``, the deciding half: what to probe, how to read the answers, the report.

Pure and synchronous (the probing itself is in ``_doctor_run``). Every probe is a call the
service must refuse, so nothing is created or changed: reads ask for a random unknown
signature id, writes send an empty body to one (the contract says 400), and the create
call gets an empty body too, never a valid create.

An answer is read against a *baseline*: the answer to a path no API serves. A route that
answers like the baseline, or a 404/405 without the contract's error shape, is probably at
another path; a contract-shaped error that differs from the baseline means the route exists.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .._client.operations import OPERATIONS, Operation
from .._client.routes import Routes

__all__ = [
    "METHODS",
    "Answer",
    "DoctorReport",
    "Probe",
    "RouteCheck",
    "Step",
    "Verdict",
    "candidate_paths",
    "classify",
    "override_line",
    "plan",
    "read_answer",
]

#: The HTTP method of each operation (a route file changes paths, never methods).
METHODS: dict[str, str] = {op.value: spec.method for op, spec in OPERATIONS.items()}
#: Where the signature routes may live instead (the Fourthline host that serves QES legal
#: documents uses /v1/qualifiedElectronicSignature; the mobile API /v1/onboarding/...).
PREFIXES = (
    "/v1/signatures",
    "/v1/qualifiedElectronicSignature",
    "/v1/qualified-electronic-signature",
    "/v1/qes/signatures",
    "/v1/onboarding/signatures",
    "/v2/signatures",
)
#: Other names the last path segment may have.
SUFFIXES: dict[str, tuple[str, ...]] = {
    Operation.UPLOAD_MOBILE_NUMBER: (
        "mobile-number",
        "mobileNumber",
        "mobile",
        "phone-number",
    ),
    Operation.GET_SIGNATURE_DETAILS: ("details", "detail"),
    Operation.APPROVE_DOCUMENTS: ("approval", "approve", "approvals"),
    Operation.CONFIRM_SIGNATURE: ("confirmation", "confirm", "confirmations"),
    Operation.GET_INFOCERT_CONTRACT: ("infocert-contract", "infocertContract", "contract"),
}
#: Where the create call may live instead.
WORKFLOW_PATHS = (
    "/v1/workflows",
    "/v1/qualifiedElectronicSignature/workflows",
    "/v1/qes/workflows",
    "/v2/workflows",
)
MAX_CANDIDATES = 24  # probes per moved route, at most
DEFAULT_PREFIX = "/v1/signatures"


class Verdict(str, enum.Enum):
    """How a route looks from its probe."""

    OK = "ok"  # a contract-shaped refusal: the route exists
    WRONG = "wrong"  # the path or the method is probably wrong
    NOT_ENABLED = "not_enabled"  # 401/403: not enabled for these credentials
    UNKNOWN = "unknown"  # anything else
    NOT_PROBED = "not_probed"  # an earlier step failed


@attrs.frozen
class Probe:
    """One call that the service must refuse."""

    operation: str
    method: str
    template: str
    path: str
    body: bytes | None = None  # an empty body for writes (Content-Type application/json)


@attrs.frozen
class Answer:
    """What a probe got back: the status (None: no answer) and the error code, if any."""

    status: int | None
    code: str | None = None
    shaped: bool = False  # a JSON object in the contract's error shape
    detail: str = ""  # the transport failure, when there was no answer

    @property
    def fingerprint(self) -> tuple[int | None, str | None, bool]:
        """What the baseline comparison looks at."""
        return (self.status, self.code, self.shaped)

    def describe(self) -> str:
        """``404 signature_not_found``, ``404 (not a contract error)``, ``no answer: ...``."""
        if self.status is None:
            return f"no answer: {self.detail}"
        if self.shaped:
            return f"{self.status} {self.code or '(error without code)'}"
        return f"{self.status} (not a contract error)"


def read_answer(status: int, content_type: str, body: bytes) -> Answer:
    """An answer's status and whether its body is the contract's error shape.

    The shape: a JSON object with a string ``code``, or a string ``message`` with an
    ``errors`` list (every field is optional in the contract, but a bare framework page or
    a gateway's own JSON has neither).
    """
    data: Any = None
    if "json" in content_type.lower() or body[:1] in (b"{", b"["):
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
    if not isinstance(data, dict):
        return Answer(status)
    code = data.get("code")
    code = code if isinstance(code, str) and code else None
    shaped = code is not None or (
        isinstance(data.get("message"), str) and isinstance(data.get("errors"), list)
    )
    return Answer(status, code, shaped)


def classify(answer: Answer, baseline: Answer | None) -> Verdict:
    """The verdict on one probe's answer (see the module's docstring)."""
    if answer.status is None:
        return Verdict.UNKNOWN
    if answer.status in (401, 403):
        return Verdict.NOT_ENABLED
    like_baseline = baseline is not None and answer.fingerprint == baseline.fingerprint
    if answer.status == 405 or like_baseline:
        return Verdict.WRONG
    if answer.status == 404:
        return Verdict.OK if answer.shaped else Verdict.WRONG
    if 400 <= answer.status < 500 and answer.shaped:
        return Verdict.OK
    return Verdict.UNKNOWN


def plan(
    routes: Routes, operation: str, template: str, signature_id: str, document_id: str
) -> Probe:
    """The probe of one operation at one path template."""
    method = METHODS[operation]
    params = {"id": signature_id, "document_id": document_id}
    used = {k: v for k, v in params.items() if "{" + k + "}" in template}
    path = routes.replace(**{operation: template}).path(operation, **used)
    return Probe(operation, method, template, path, b"" if method != "GET" else None)


def candidate_paths(operation: str, routes: Routes, confirmed: Iterable[str] = ()) -> list[str]:
    """Other templates to try for a route that looks moved, most likely first.

    ``confirmed`` are templates of other operations that answered as routes: their prefix
    is tried first. Templates another operation of the same method uses are skipped.
    """
    default = getattr(Routes(), operation)
    current = getattr(routes, operation)
    if operation == Operation.CREATE_WORKFLOW:
        return [path for path in WORKFLOW_PATHS if path != current]
    if not default.startswith(DEFAULT_PREFIX + "/{id}"):
        return []
    rest = default[len(DEFAULT_PREFIX) :]
    head, _, last = rest.rpartition("/")
    names = SUFFIXES.get(operation, (last,))
    prefixes = [p for p in (_prefix_of(t) for t in confirmed) if p] + list(PREFIXES)
    taken = {
        getattr(routes, name)
        for name in Routes.operations()
        if name != operation and METHODS[name] == METHODS[operation]
    }
    found: list[str] = []
    for prefix in dict.fromkeys(prefixes):
        for name in names:
            template = f"{prefix}{head}/{name}"
            if template not in taken and template != current and template not in found:
                found.append(template)
    return found[:MAX_CANDIDATES]


def _prefix_of(template: str) -> str | None:
    head, marker, _ = template.partition("/{id}")
    return head if marker and head else None


def override_line(operation: str, template: str) -> str:
    """The route-file line that sets one operation's path."""
    return f"{operation} = {json.dumps(template)}"


@attrs.frozen
class Step:
    """One step before the route probes: dns, tcp, tls, token, baseline."""

    name: str
    ok: bool | None  # None: skipped (not applicable, or an earlier step failed)
    detail: str


@attrs.frozen
class RouteCheck:
    """The report's line for one operation."""

    operation: str
    method: str
    path: str
    answer: str
    verdict: Verdict
    override: str | None = None  # the route-file line to try, for a wrong route
    note: str = ""
    found: str | None = None  # the template that answered instead, for a wrong route


@attrs.frozen
class DoctorReport:
    """Everything ``qes-async doctor`` found; :attr:`ok` decides its exit status."""

    base_url: str
    steps: Sequence[Step]
    routes: Sequence[RouteCheck]

    @property
    def ok(self) -> bool:
        """True only when every step passed and every route looks right."""
        return all(s.ok is not False for s in self.steps) and all(
            r.verdict is Verdict.OK for r in self.routes
        )

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (``--json``)."""
        return {
            "baseUrl": self.base_url,
            "ok": self.ok,
            "steps": [attrs.asdict(s) for s in self.steps],
            "routes": [
                {
                    "operation": r.operation,
                    "method": r.method,
                    "path": r.path,
                    "answer": r.answer,
                    "verdict": r.verdict.value,
                    "override": r.override,
                    "found": r.found,
                    "note": r.note,
                }
                for r in self.routes
            ],
            "overrides": [r.override for r in self.routes if r.override],
        }

    def render(self) -> str:
        """The report as text: the steps, one table of routes, the overrides to try."""
        lines = [f"qes-async doctor: {self.base_url}"]
        for step in self.steps:
            mark = {True: "ok", False: "FAILED", None: "skipped"}[step.ok]
            lines.append(f"  {step.name:<9} {mark:<8} {step.detail}")
        if self.routes:
            lines += ["", *_table(self.routes)]
        lines += _overrides_block(self.routes)
        right = sum(r.verdict is Verdict.OK for r in self.routes)
        verdict = "every route looks right" if self.ok else "NOT every route looks right"
        lines += ["", f"{right}/{len(self.routes)} routes ok: {verdict}."]
        return "\n".join(lines)


def _table(routes: Sequence[RouteCheck]) -> list[str]:
    header = ("operation", "method", "path tried", "answer", "verdict")
    rows = [(r.operation, r.method, r.path, r.answer, r.verdict.value) for r in routes]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        out.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for r in routes:
        if r.note:
            out.append(f"  {r.operation}: {r.note}")
    return out


def _overrides_block(routes: Sequence[RouteCheck]) -> list[str]:
    lines = [r.override for r in routes if r.override]
    if not lines:
        return []
    return ["", "Override lines to try (put them in your routes file, then run doctor again):"] + [
        f"  {line}" for line in lines
    ]
