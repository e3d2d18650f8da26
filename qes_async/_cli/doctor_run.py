"""``qes-async doctor``, the probing half: reach the host, ask for a token, probe each route.

Every call here is one attempt with a time bound and a size bound on what it reads; none
is retried. What the answers mean is decided in ``_doctor``. The access token and the
client secret go only into the requests that need them, never into the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl as _ssl
import uuid
from typing import Any

import aiohttp
import attrs
from yarl import URL

from .._client.operations import Operation
from .._client.routes import Routes
from .doctor import (
    Answer,
    DoctorReport,
    Probe,
    RouteCheck,
    Step,
    Verdict,
    candidate_paths,
    classify,
    override_line,
    plan,
    read_answer,
)

__all__ = ["MAX_PROBE_BODY", "run_doctor"]

MAX_PROBE_BODY = 64 * 1024  # an error answer is small; more is read no further
_BASELINE_PATH = "/qes-async-doctor/{}/no-such-route"
#: Where the token endpoint may live instead (OAuth2 servers put it in a few usual places).
TOKEN_PATHS = ("/v1/oauth2/token", "/oauth2/token", "/v1/oauth/token", "/oauth/token", "/v1/token")


@attrs.frozen
class _Target:
    base_url: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    routes: Routes
    ssl: _ssl.SSLContext | bool
    timeout: float


def _client_trust(client: Any) -> _ssl.SSLContext | bool:
    """The client's own TLS trust when it chose one (a private CA), else the system's."""
    transport = client._transport.transport
    return transport.ssl_context if getattr(transport, "custom_ssl", False) else True


async def run_doctor(client: Any, *, timeout: float = 10.0) -> DoctorReport:
    """Diagnose the environment ``client`` is configured for (URL, credentials, trust,
    routes), without creating or changing anything at the service."""
    target = _Target(
        client.base_url,
        client.client_id,
        client._secret.reveal(),  # the doctor is part of the client's package
        client.routes,
        _client_trust(client),
        timeout,
    )
    steps = await reach(URL(target.base_url), target.ssl, timeout)
    if not all(step.ok is not False for step in steps):
        return DoctorReport(target.base_url, steps, _not_probed(target.routes, "unreachable"))
    async with aiohttp.ClientSession() as session:
        prober = _Prober(session, target)
        token_step, token_row, token = await prober.token()
        steps.append(token_step)
        if token is None:
            rows = [token_row, *_not_probed(target.routes, "no token")[1:]]
            return DoctorReport(target.base_url, steps, rows)
        baseline_step, baseline = await prober.baseline(token)
        steps.append(baseline_step)
        rows = [token_row, *await prober.routes(token, baseline)]
    return DoctorReport(target.base_url, steps, rows)


def _not_probed(routes: Routes, why: str) -> list[RouteCheck]:
    from .doctor import METHODS

    return [
        RouteCheck(op, METHODS[op], getattr(routes, op), f"not probed ({why})", Verdict.NOT_PROBED)
        for op in Routes.operations()
    ]


# ------------------------------------------------------------------------ reaching the host


async def reach(url: URL, ssl: _ssl.SSLContext | bool, timeout: float) -> list[Step]:
    """DNS, then TCP, then (for https) a TLS handshake with the configured trust."""
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        return [Step("dns", False, f"cannot resolve {host}: {_reason(exc)}")]
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    steps = [Step("dns", True, f"{host} resolves to {', '.join(addresses[:3])}")]
    failure = ""
    for address in addresses:
        failure = await _open(address, port, None, None, timeout)
        if not failure:
            steps.append(Step("tcp", True, f"connected to {address}:{port}"))
            break
    else:
        return [*steps, Step("tcp", False, f"cannot connect to {host}:{port}: {failure}")]
    if url.scheme != "https":
        return [*steps, Step("tls", None, "not used (http); the real service needs https")]
    context = _context(ssl)
    trust = _trust(ssl)
    failure = await _open(host, port, context, host, timeout)
    if failure:
        return [*steps, Step("tls", False, f"handshake with {trust} failed: {failure}")]
    return [*steps, Step("tls", True, f"certificate of {host} verified with {trust}")]


def _context(ssl: _ssl.SSLContext | bool) -> _ssl.SSLContext:
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    context = _ssl.create_default_context()
    if ssl is False:
        context.check_hostname = False
        context.verify_mode = _ssl.CERT_NONE
    return context


def _trust(ssl: _ssl.SSLContext | bool) -> str:
    if isinstance(ssl, _ssl.SSLContext):
        return "the configured SSL context"
    return "the system trust store" if ssl else "verification OFF"


async def _open(
    host: str, port: int, context: _ssl.SSLContext | None, name: str | None, timeout: float
) -> str:
    """Open and close one connection; the reason it failed, or "" if it worked."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=name), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        return _reason(exc)
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and exc.errno:
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's long wording
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)


# ------------------------------------------------------------------------------- probes


class _Prober:
    """Sends the token request, the baseline probe and the route probes."""

    def __init__(self, session: aiohttp.ClientSession, target: _Target) -> None:
        self.session = session
        self.target = target
        self.signature_id = str(uuid.uuid4())  # random, so surely unknown to the service
        self.document_id = str(uuid.uuid4())

    async def _send(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> tuple[Answer, dict[str, Any] | None, str]:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = URL(self.target.base_url.rstrip("/") + path, encoded=True)
        try:
            async with self.session.request(
                method,
                url,
                data=body,
                headers=headers,
                ssl=self.target.ssl,
                timeout=aiohttp.ClientTimeout(total=self.target.timeout),
                allow_redirects=False,
            ) as resp:
                raw = await resp.content.read(MAX_PROBE_BODY)
                allow = resp.headers.get("Allow", "")
                answer = read_answer(resp.status, resp.headers.get("Content-Type", ""), raw)
                return answer, _json_object(raw) if resp.status == 200 else None, allow
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Answer(None, detail=_reason(exc) or type(exc).__name__), None, ""

    async def _ask_token(self, path: str) -> tuple[Answer, dict[str, Any] | None, str | None]:
        import json

        target = self.target
        body = json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": target.client_id,
                "client_secret": target.client_secret,
            }
        ).encode()
        answer, data, _ = await self._send("POST", path, body=body)
        token = data.get("access_token") if data else None
        ok = answer.status == 200 and isinstance(token, str) and bool(token)
        return answer, data, token if ok else None

    async def token(self) -> tuple[Step, RouteCheck, str | None]:
        """Ask for a token: the credentials step and the token route's line. A token path
        that answers like the baseline is looked for elsewhere, so the probes can go on."""
        path = self.target.routes.create_token
        answer, data, token = await self._ask_token(path)
        row = RouteCheck(Operation.CREATE_TOKEN, "POST", path, "200 token", Verdict.OK)
        if token is None:
            _, baseline = await self.baseline(None)
            verdict = classify(answer, baseline)
            if answer.status in (400, 401, 403) and answer.shaped:
                verdict = Verdict.OK  # the route answered; it is the credentials that failed
            row = attrs.evolve(row, answer=answer.describe(), verdict=verdict)
            if verdict is Verdict.WRONG:
                row, data, token = await self._find_token(row, baseline)
        if token is None:
            why = "credentials refused" if answer.status in (401, 403) else "no token"
            return Step("token", False, f"{why}: {answer.describe()}"), row, None
        detail = (
            f"credentials accepted: token_type {_shown(data, 'token_type')}, "
            f"expires_in {_shown(data, 'expires_in')}"
        )
        return Step("token", True, detail + (f" at {row.found}" if row.found else "")), row, token

    async def _find_token(
        self, row: RouteCheck, baseline: Answer
    ) -> tuple[RouteCheck, dict[str, Any] | None, str | None]:
        for candidate in TOKEN_PATHS:
            if candidate == row.path:
                continue
            answer, data, token = await self._ask_token(candidate)
            if token is not None or classify(answer, baseline) is Verdict.OK:
                line = override_line(Operation.CREATE_TOKEN, candidate)
                note = f"{candidate} answers {answer.describe() if token is None else '200 token'}"
                return attrs.evolve(row, override=line, note=note, found=candidate), data, token
        note = f"none of {len(TOKEN_PATHS)} other likely paths answered; ask Fourthline"
        return attrs.evolve(row, note=note), None, None

    async def baseline(self, token: str | None) -> tuple[Step, Answer]:
        """The answer to a path no API serves, which a missing route answers too."""
        path = _BASELINE_PATH.format(uuid.uuid4().hex)
        answer, _, _ = await self._send("GET", path, token=token)
        detail = f"a path no API serves answers {answer.describe()}"
        return Step("baseline", None if answer.status is None else True, detail), answer

    async def routes(self, token: str, baseline: Answer) -> list[RouteCheck]:
        """Probe every operation but the token's, trying other paths for a moved one."""
        rows: list[RouteCheck] = []
        confirmed: list[str] = []
        for operation in Routes.operations()[1:]:
            row = await self._check(operation, token, baseline, confirmed)
            if row.verdict is Verdict.OK or row.found:
                confirmed.append(row.found or row.path)
            rows.append(row)
        return rows

    async def _probe(self, operation: str, template: str, token: str) -> tuple[Answer, str]:
        probe: Probe = plan(
            self.target.routes, operation, template, self.signature_id, self.document_id
        )
        answer, _, allow = await self._send(probe.method, probe.path, token=token, body=probe.body)
        return answer, allow

    async def _check(
        self, operation: str, token: str, baseline: Answer, confirmed: list[str]
    ) -> RouteCheck:
        routes = self.target.routes
        template = getattr(routes, operation)
        method = plan(routes, operation, template, "x", "y").method
        answer, allow = await self._probe(operation, template, token)
        verdict = classify(answer, baseline)
        text = answer.describe() + (f", Allow: {allow}" if allow else "")
        if verdict is not Verdict.WRONG:
            return RouteCheck(operation, method, template, text, verdict)
        if answer.status == 405:
            note = f"the path exists but not for {method}; a routes file cannot change methods"
            return RouteCheck(operation, method, template, text, verdict, note=note)
        tried = candidate_paths(operation, routes, confirmed)
        for candidate in tried:
            found, _ = await self._probe(operation, candidate, token)
            if classify(found, baseline) is Verdict.OK:
                note = f"{candidate} answers {found.describe()}"
                line = override_line(operation, candidate)
                return RouteCheck(operation, method, template, text, verdict, line, note, candidate)
        note = (
            f"none of {len(tried)} other likely paths answered; ask Fourthline for this path"
            if tried
            else "no other likely path is known; ask Fourthline for this path"
        )
        return RouteCheck(operation, method, template, text, verdict, note=note)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _shown(data: dict[str, Any] | None, key: str) -> str:
    value = (data or {}).get(key)
    if value is None:
        return "missing (the SDK assumes " + ("Bearer)" if key == "token_type" else "3600 s)")
    return str(value)[:40]
