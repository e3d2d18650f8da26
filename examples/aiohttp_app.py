"""A signing web app in aiohttp: upload a PDF, consent, passcode, download, with webhooks.

Pages (plain HTML built from Python strings, every value escaped, one small inline
stylesheet and no external assets):

* ``GET /``: the start form: client reference, mobile number and the PDF to sign (with no
  file chosen, a bundled sample loan agreement made with :func:`qes_async.make_pdf`);
* ``POST /start``: checks the inputs first (an E.164 number; a PDF, not empty, within the
  size limit). A wrong input shows the form again with the error next to its field;
  otherwise the flow starts as a task and the browser goes straight to its progress page;
* ``GET /flows/{id}``: the progress page; it polls ``GET /flows/{id}/status`` (JSON) and moves
  on to whatever the flow waits for (without JavaScript it refreshes itself);
* ``GET|POST /flows/{id}/consent``: the documents and legal conditions, approve or decline;
* ``GET|POST /flows/{id}/passcode``: the SMS passcode, with "wrong passcode, N attempts
  left" feedback;
* ``GET /flows/{id}/done``: the outcome: the signed PDFs and, when the flow went to InfoCert,
  its certificate contract (``/download/{n}``, ``/contract``); after a decline or a failure,
  what happened and a link to start again;
* ``POST /fourthline/qes/{signatureId}``: Fourthline's webhooks (a :class:`WebhookReceiver`
  feeding the :class:`WebhookDispatcher` that every flow's :class:`HybridWaiter` listens to).

Each flow runs as a task with a :class:`SignerInbox` as its signer: the flow's questions wait
in the inbox until a page submits the answer. Run it:

* ``python examples/aiohttp_app.py --sandbox``: an embedded sandbox (real clock) whose
  webhooks are sent to this app. Every page carries a "sandbox" banner, the mobile number
  is prefilled with a sample number, and the passcode page shows the sandbox's SMS (sandbox
  only, clearly labelled) so you can type it;
* ``python examples/aiohttp_app.py`` with ``QES_CLIENT_ID``, ``QES_CLIENT_SECRET``,
  ``QES_BASE_URL`` (or ``QES_ENVIRONMENT``), ``QES_WEBHOOK_USER`` and
  ``QES_WEBHOOK_PASSWORD`` for a real environment (configure the webhook URL
  ``https://<your host>/fourthline/qes`` at Fourthline).

A real app must also authenticate its users, tie each flow to its user, and protect its
forms against cross-site requests; this example leaves that out to stay short.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import logging
import os
import re
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from qes_async import (
    ConsentRequest,
    Document,
    FlowEvent,
    FlowExpiredError,
    FlowOutcome,
    FlowResult,
    HybridWaiter,
    KYCRequiredError,
    PasscodeExpiredError,
    PasscodeRequest,
    QESClient,
    QESError,
    Secret,
    SignatureFlow,
    SignerInbox,
    TooManyAttemptsError,
    WaitTimeoutError,
    WebhookDispatcher,
    make_pdf,
)
from qes_async.sandbox import SandboxServer, sandbox_ca
from qes_async.webhooks import BasicAuth, WebhookReceiver

log = logging.getLogger("qes_async.examples.aiohttp_app")

MAX_PDF_SIZE = 10 * 1024 * 1024  # the largest upload this app takes, in bytes
FORM_OVERHEAD = 64 * 1024  # room for the other fields and the multipart framing
E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # "+", country code and number, digits only
SANDBOX_MOBILE = "+31612345678"  # any E.164 number gets the sandbox's SMS
SAMPLE_NAME = "sample-loan-agreement.pdf"
SAMPLE_TITLE = "Loan agreement (sample)"
SAMPLE_PDF = make_pdf("Loan agreement\nAmount: EUR 10,000\nTerm: 60 months")
STATUS_TEXT = {  # what the progress page says while the flow works
    "starting": "Preparing your document",
    "consent_required": "Waiting for your approval",
    "confirmation_required": "Waiting for your passcode",
    "pending_verification": "Checking your identity",
    "signed": "Signed; saving the documents",
}


@dataclass
class FlowView:
    """What the pages know about one running flow."""

    flow: SignatureFlow
    task: asyncio.Task[FlowResult]
    status: str = "starting"
    events: list[str] = field(default_factory=list)

    def record(self, event: FlowEvent) -> None:
        if event.status:
            self.status = event.status
        self.events.append(event.kind.value)


@dataclass
class StartForm:
    """The start form's values and, per field, what is wrong with it."""

    client_reference: str = "client-1"
    mobile_number: str = ""
    document: Document | None = None
    errors: dict[str, str] = field(default_factory=dict)


class SigningApp:
    """The web app's state and handlers.

    Args:
        client: the QESClient every flow shares.
        receiver: the webhook receiver; its dispatcher feeds the flows' waiters.
        download_dir: where signed PDFs are written.
        sandbox: the embedded sandbox, only in sandbox mode (banner, sample number, SMS).
        max_pdf_size: the largest PDF accepted for upload, in bytes.
        flow_options: more keyword arguments for every SignatureFlow.
    """

    def __init__(
        self,
        client: QESClient,
        receiver: WebhookReceiver,
        *,
        download_dir: Path,
        sandbox: SandboxServer | None = None,
        max_pdf_size: int = MAX_PDF_SIZE,
        **flow_options: Any,
    ) -> None:
        self.client = client
        self.receiver = receiver
        self.inbox = SignerInbox(answer_timeout=30.0)
        self.download_dir = download_dir
        self.sandbox = sandbox
        self.max_pdf_size = min(max_pdf_size, client.max_document_size)
        self.flow_options = flow_options
        self.flows: dict[str, FlowView] = {}

    def make_app(self) -> web.Application:
        """The aiohttp application with every page and the webhook route."""
        app = web.Application(client_max_size=self.max_pdf_size + FORM_OVERHEAD)
        app.add_routes(
            [
                web.get("/", self.home),
                web.post("/start", self.start),
                web.get("/flows/{id}", self.progress_page),
                web.get("/flows/{id}/status", self.status),
                web.get("/flows/{id}/consent", self.consent_page),
                web.post("/flows/{id}/consent", self.consent_submit),
                web.get("/flows/{id}/passcode", self.passcode_page),
                web.post("/flows/{id}/passcode", self.passcode_submit),
                web.get("/flows/{id}/done", self.done_page),
                web.get("/flows/{id}/download/{n}", self.download),
                web.get("/flows/{id}/contract", self.download_contract),
                *self.receiver.aiohttp_routes(),
            ]
        )
        app.on_cleanup.append(self._stop_flows)
        return app

    # ------------------------------------------------------------------------- start

    async def home(self, request: web.Request) -> web.Response:
        return self._start_form(StartForm(mobile_number=SANDBOX_MOBILE if self.sandbox else ""))

    async def start(self, request: web.Request) -> web.Response:
        form = await self._read_start_form(request)
        if form.errors:
            return self._start_form(form, status=422)
        flow_id = str(uuid.uuid4())
        flow = SignatureFlow(
            self.client,
            flow_id=flow_id,
            documents=[form.document or _sample()],
            mobile_number=form.mobile_number,
            client_reference=form.client_reference,
            signer=self.inbox,
            waiter=HybridWaiter(self.client, self.receiver.dispatcher, safety_interval=30.0),
            download_dir=self.download_dir,
            on_event=lambda event: self._record(flow_id, event),
            **self.flow_options,
        )
        task = asyncio.ensure_future(flow.run())  # runs on; the browser sees its progress
        task.add_done_callback(lambda done: _log_outcome(flow_id, done))
        self.flows[flow_id] = FlowView(flow, task)
        raise web.HTTPSeeOther(f"/flows/{flow_id}")

    async def _read_start_form(self, request: web.Request) -> StartForm:
        """The start form, every field checked before any flow starts."""
        form = StartForm()
        too_big = f"The PDF is larger than {_size(self.max_pdf_size)}; choose a smaller one."
        if (request.content_length or 0) > self.max_pdf_size + FORM_OVERHEAD:
            form.errors["document"] = too_big  # refused before the upload is read
            return form
        data = await request.post()  # the aiohttp limit (client_max_size) bounds it too
        form.client_reference = str(data.get("client_reference", "")).strip()
        form.mobile_number = re.sub(r"[\s()-]", "", str(data.get("mobile_number", "")))
        if not form.client_reference:
            form.errors["client_reference"] = "Enter the client reference."
        elif len(form.client_reference) > 100:
            form.errors["client_reference"] = "Use at most 100 characters."
        if not E164.fullmatch(form.mobile_number):
            form.errors["mobile_number"] = (
                "Enter the number with + and the country code, e.g. +31612345678."
            )
        upload = data.get("document")
        if isinstance(upload, web.FileField) and upload.filename:
            pdf = upload.file.read(self.max_pdf_size + 1)
            if not pdf:
                form.errors["document"] = "The file is empty; choose a PDF."
            elif len(pdf) > self.max_pdf_size:
                form.errors["document"] = too_big
            elif not pdf.startswith(b"%PDF-"):
                form.errors["document"] = "This file is not a PDF; choose a PDF file."
            else:
                form.document = Document.from_bytes(
                    _safe_file_name(upload.filename), pdf, display_name=upload.filename[:100]
                )
        return form

    def _start_form(self, form: StartForm, status: int = 200) -> web.Response:
        def error(name: str) -> str:
            message = form.errors.get(name)
            return f"<p class='error' id='{name}-error'>{esc(message)}</p>" if message else ""

        def invalid(name: str) -> str:
            return " aria-invalid='true'" if name in form.errors else ""

        kept = form.errors and form.document is not None  # a browser never refills a file
        again = " Your file was fine but is not kept: choose it again." if kept else ""
        body = f"""<form method="post" action="/start" enctype="multipart/form-data">
<label for="client_reference">Client reference</label>
<input id="client_reference" name="client_reference" required
 value="{esc(form.client_reference)}"{invalid("client_reference")}>
{error("client_reference")}
<label for="mobile_number">Mobile number (for the SMS passcode)</label>
<input id="mobile_number" name="mobile_number" type="tel" required placeholder="+31612345678"
 value="{esc(form.mobile_number)}"{invalid("mobile_number")}>
{error("mobile_number")}
<label for="document">PDF to sign (up to {_size(self.max_pdf_size)})</label>
<input id="document" name="document" type="file" accept=".pdf,application/pdf"
{invalid("document")}>
<p class="hint">No file chosen? The sample <b>{esc(SAMPLE_TITLE)}</b> is signed.{again}</p>
{error("document")}
<p><button type="submit" id="start">Start signing</button></p></form>"""
        return self.page("Sign a document", body, status=status)

    def _record(self, flow_id: str, event: FlowEvent) -> None:
        view = self.flows.get(flow_id)
        if view is not None:
            view.record(event)

    # ----------------------------------------------------------------------- progress

    def _next(self, flow_id: str, view: FlowView) -> str | None:
        """The page the flow needs now, or None while it works on its own."""
        asked = self.inbox.pending(flow_id)
        if isinstance(asked, ConsentRequest):
            return f"/flows/{flow_id}/consent"
        if isinstance(asked, PasscodeRequest):
            return f"/flows/{flow_id}/passcode"
        if view.task.done():
            return f"/flows/{flow_id}/done"
        return None

    async def progress_page(self, request: web.Request) -> web.Response:
        flow_id, view = self._view(request)
        if (next_page := self._next(flow_id, view)) is not None:
            raise web.HTTPSeeOther(next_page)  # e.g. the refresh of a browser without script
        text = STATUS_TEXT.get(view.status, f"Working (status: {view.status})")
        body = f"""<p class="progress" id="progress"><span class="spinner"></span>
<span id="status">{esc(text)}</span>…</p>
<p class="hint">This page moves on by itself when the next step is ready.</p>
<script>
async function poll() {{
  try {{
    const answer = await (await fetch("/flows/{esc(flow_id)}/status")).json();
    if (answer.next) {{ location.replace(answer.next); return; }}
    document.getElementById("status").textContent = answer.text;
  }} catch (e) {{}}
  setTimeout(poll, 500);
}}
poll();
</script>"""
        return self.page("Signing in progress", body, refresh_without_script=3)

    async def status(self, request: web.Request) -> web.Response:
        """What the progress page polls: the status and the next page, if any."""
        flow_id, view = self._view(request)
        text = STATUS_TEXT.get(view.status, f"Working (status: {view.status})")
        return web.json_response(
            {"status": view.status, "text": text, "next": self._next(flow_id, view)}
        )

    def _view(self, request: web.Request) -> tuple[str, FlowView]:
        flow_id = request.match_info["id"]
        view = self.flows.get(flow_id)
        if view is None:
            raise web.HTTPNotFound(text="No such signing flow.")
        return flow_id, view

    # ----------------------------------------------------------------------- consent

    async def consent_page(self, request: web.Request) -> web.Response:
        flow_id, _ = self._view(request)
        asked = self.inbox.pending(flow_id)
        if not isinstance(asked, ConsentRequest):
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        docs = "".join(
            f"<li class='document'>{esc(d.display_name or d.file_name)}"
            f" (<code>{esc(d.file_name)}</code>)</li>"
            for d in asked.documents
        )
        conditions = "".join(
            f"<li class='condition'><a href='{esc(c.url or '#')}' rel='noopener'>"
            f"{esc(c.title or c.id)}</a> (version {esc(str(c.version))})"
            f"{'<br><small>' + esc(c.text) + '</small>' if c.text else ''}</li>"
            for c in asked.legal_conditions
        )
        body = f"""<h2>Documents</h2><ul id="documents">{docs}</ul>
<h2>Legal conditions</h2><ul id="conditions">{conditions}</ul>
<p>By approving you accept these conditions and ask for a qualified electronic signature.
A passcode will be sent to {esc(asked.masked_mobile_number)}.</p>
<form method="post"><button name="decision" value="approve" id="approve">Approve and sign
</button> <button name="decision" value="decline" id="decline" class="secondary">Decline
</button></form>"""
        return self.page("Review and approve", body)

    async def consent_submit(self, request: web.Request) -> web.Response:
        flow_id, _ = self._view(request)
        form = await request.post()
        answer = await self.inbox.submit_consent(flow_id, form.get("decision") == "approve")
        if answer.accepted:  # a decline too: the flow ends and the done page says so
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        return self._problem(flow_id, answer.message)

    # ---------------------------------------------------------------------- passcode

    async def passcode_page(self, request: web.Request) -> web.Response:
        flow_id, _ = self._view(request)
        asked = self.inbox.pending(flow_id)
        if not isinstance(asked, PasscodeRequest):
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        feedback = ""
        if asked.retry:
            left = "" if asked.attempts_left is None else f" {asked.attempts_left} attempts left."
            feedback = "Wrong passcode." + left
        return self._passcode_form(asked, feedback)

    async def passcode_submit(self, request: web.Request) -> web.Response:
        flow_id, _ = self._view(request)
        # Straight from the form into a Secret: no local of this frame holds the passcode
        # or the form around it while the inbox takes it (error trackers record locals).
        code = await posted_passcode(request)
        asked = self.inbox.pending(flow_id)
        answer = await self.inbox.submit_passcode(flow_id, code)
        if answer.accepted:
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        # AnswerKind is not exported by qes_async yet, hence its value.
        if answer.kind.value == "wrong_passcode" and isinstance(asked, PasscodeRequest):
            return self._passcode_form(asked, answer.message, status=422)
        return self._problem(flow_id, answer.message)

    def _passcode_form(
        self, asked: PasscodeRequest, feedback: str, status: int = 200
    ) -> web.Response:
        body = f"<p>Enter the passcode sent by SMS to {esc(asked.masked_mobile_number)}.</p>"
        if feedback:
            body += f"<p id='feedback' class='error'>{esc(feedback)}</p>"
        body += """<form method="post"><label for="passcode">Passcode</label>
<input id="passcode" name="passcode" required autocomplete="one-time-code"
 inputmode="numeric"> <button id="confirm">Sign</button></form>"""
        body += self._sandbox_sms(asked.signature_id)
        return self.page("Enter your passcode", body, status=status)

    def _sandbox_sms(self, signature_id: str) -> str:
        """The sandbox's SMS, shown only in sandbox mode (a real passcode never is)."""
        if self.sandbox is None:
            return ""
        try:
            code = self.sandbox.latest_passcode(signature_id)
        except LookupError:
            return ""
        return (
            "<aside class='sandbox'><b>SANDBOX ONLY:</b> the SMS the sandbox sent says "
            f"<code id='sandbox-passcode'>{esc(code)}</code></aside>"
        )

    # -------------------------------------------------------------------------- done

    async def done_page(self, request: web.Request) -> web.Response:
        flow_id, view = self._view(request)
        if not view.task.done():
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        again = "<p><a class='button' id='start-again' href='/'>Start again</a></p>"
        error = None if view.task.cancelled() else view.task.exception()
        if view.task.cancelled() or error is not None:
            body = f"<p id='outcome' class='error'>The document was not signed. {_why(error)}</p>"
            if isinstance(error, QESError):  # the SDK's messages carry no secrets
                body += f"<details><summary>Details</summary><p class='hint'>{esc(error)}</p>"
                body += "</details>"
            return self.page("Not signed", body + again)
        result = view.task.result()
        if result.outcome is FlowOutcome.DECLINED:
            body = "<p id='outcome'>You declined: nothing was signed.</p>"
            return self.page("Declined", body + again)
        links = "".join(
            f"<li><a class='download' href='/flows/{esc(flow_id)}/download/{n}'>"
            f"{esc(Path(d.path).name)}</a> <small>(SHA-256 <code>{esc(d.sha256[:16])}…</code>,"
            f" signature {esc(d.validation)})</small></li>"
            for n, d in enumerate(result.documents)
        )
        body = f"<p id='outcome'>Outcome: <b>{esc(result.outcome.value)}</b></p>"
        body += f"<h2>Signed documents</h2><ul id='downloads'>{links}</ul>"
        if result.contract is not None:  # InfoCert has one; Namirial none
            body += (
                "<h2>Certificate contract</h2><p>Your trust service provider, InfoCert, "
                "issued a contract for your signing certificate: "
                f"<a id='contract' href='/flows/{esc(flow_id)}/contract'>the InfoCert contract"
                "</a> (PDF).</p>"
            )
        return self.page("Signed", body + again)

    async def download(self, request: web.Request) -> web.StreamResponse:
        documents = self._result(request).documents
        index = request.match_info["n"]
        if not index.isdigit() or int(index) >= len(documents):
            raise web.HTTPNotFound(text="No such document.")
        return _attachment(Path(documents[int(index)].path))

    async def download_contract(self, request: web.Request) -> web.StreamResponse:
        contract = self._result(request).contract
        if contract is None:
            raise web.HTTPNotFound(text="This signature has no contract.")
        return _attachment(Path(contract.path))

    def _result(self, request: web.Request) -> FlowResult:
        _, view = self._view(request)
        if not view.task.done() or view.task.cancelled() or view.task.exception():
            raise web.HTTPNotFound(text="Nothing to download.")
        return view.task.result()

    async def _stop_flows(self, app: web.Application) -> None:
        for view in self.flows.values():
            view.task.cancel()
        await asyncio.gather(*(v.task for v in self.flows.values()), return_exceptions=True)

    # -------------------------------------------------------------------------- HTML

    def page(
        self,
        title: str,
        body: str,
        *,
        status: int = 200,
        refresh_without_script: int | None = None,
    ) -> web.Response:
        """A whole HTML page; ``body`` must already be escaped."""
        refresh = (
            f'<noscript><meta http-equiv="refresh" content="{refresh_without_script}"></noscript>'
            if refresh_without_script
            else ""
        )
        banner = (
            "<div class='banner' id='sandbox-banner'><b>Sandbox</b>: nothing here is real; "
            "no SMS is sent and the signatures are made with a test certificate.</div>"
            if self.sandbox
            else ""
        )
        text = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{esc(title)}</title><style>{STYLE}</style></head>
<body>{banner}<main><h1>{esc(title)}</h1>{body}</main></body></html>"""
        return web.Response(text=text, content_type="text/html", status=status)

    def _problem(self, flow_id: str, message: str) -> web.Response:
        body = f"<p class='error'>{esc(message)}</p>"
        body += f"<p><a class='button' href='/flows/{esc(flow_id)}'>Continue</a></p>"
        return self.page("Something changed", body, status=409)


# --------------------------------------------------------------------------------- helpers

STYLE = """
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#222;background:#f6f7f9}
main{max-width:36em;margin:2em auto;padding:1.5em 2em;background:#fff;border-radius:8px;
 box-shadow:0 1px 3px #0002}
h1{font-size:1.5em;margin-top:0} h2{font-size:1.1em}
label{display:block;font-weight:600;margin-top:1em}
input{font:inherit;padding:.4em;width:100%;box-sizing:border-box;border:1px solid #bbb;
 border-radius:4px}
input[aria-invalid]{border-color:#b00020}
button,.button{display:inline-block;font:inherit;padding:.5em 1.2em;border:0;border-radius:4px;
 background:#1d4ed8;color:#fff;text-decoration:none;cursor:pointer;margin-top:1em}
button.secondary{background:#e5e7eb;color:#222}
.error{color:#b00020;margin:.3em 0} .hint{color:#666;font-size:.9em;margin:.3em 0}
.banner{background:#fef3c7;border-bottom:2px solid #d97706;padding:.5em 1em;text-align:center}
.sandbox{border:2px dashed #d97706;padding:.5em;margin-top:2em}
.spinner{display:inline-block;width:.8em;height:.8em;border:3px solid #ccc;
 border-top-color:#1d4ed8;border-radius:50%;animation:spin 1s linear infinite}
@keyframes spin{to{transform:rotate(360deg)}}
"""


async def posted_passcode(request: web.Request) -> Secret:
    """The passcode form's field, without surrounding blanks, as a
    :class:`~qes_async.Secret` (the form, which aiohttp keeps on the request, is never
    a local of the handler's frame)."""
    return Secret(str((await request.post()).get("passcode", "")).strip())


def esc(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _why(error: BaseException | None) -> str:
    """The reason in the signer's words (the details are for whoever runs the app)."""
    if isinstance(error, KYCRequiredError):
        return "Your identity must be verified again before you can sign."
    if isinstance(error, FlowExpiredError | PasscodeExpiredError | WaitTimeoutError):
        return "The time to sign ran out."
    if isinstance(error, TooManyAttemptsError):
        return "The passcode was wrong too many times."
    return "The signing service could not finish the signature."


def _sample() -> Document:
    return Document.from_bytes(SAMPLE_NAME, SAMPLE_PDF, display_name=SAMPLE_TITLE)


def _size(limit: int) -> str:
    mib = 1024 * 1024
    return f"{limit // mib} MB" if limit >= mib else f"{limit // 1024} KB"


def _safe_file_name(name: str) -> str:
    """A plain ``name.pdf`` for the service, whatever the browser sent."""
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    stem = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower()
    return (stem[:80] or "document") + ".pdf"


def _attachment(path: Path) -> web.FileResponse:
    disposition = f'attachment; filename="{path.name}"'
    return web.FileResponse(path, headers={"Content-Disposition": disposition})


def _log_outcome(flow_id: str, task: asyncio.Future[FlowResult]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.warning("flow %s failed: %s", flow_id, type(error).__name__)
    else:
        log.info("flow %s ended: %s", flow_id, task.result().outcome.value)


# --------------------------------------------------------------------------------- serving


@dataclass
class Running:
    """A served app: its URL, the app object and (in sandbox mode) the sandbox."""

    url: str
    app: SigningApp
    sandbox: SandboxServer | None


@contextlib.asynccontextmanager
async def serve_sandbox(
    download_dir: Path, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Running]:
    """Serve the app with an embedded sandbox whose webhooks come to this app."""
    user, password = "fourthline", secrets.token_urlsafe(16)
    async with (
        SandboxServer() as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
    ):
        receiver = WebhookReceiver(WebhookDispatcher(), BasicAuth(user, password))
        app = SigningApp(
            client,
            receiver,
            download_dir=download_dir,
            sandbox=sandbox,
            trust_roots=[sandbox_ca().certificate_pem],  # the sandbox signs with its test CA
        )
        async with _served(app, host, port) as url:
            sandbox.configure_webhooks(f"{url}{receiver.prefix}", basic=(user, password))
            yield Running(url, app, sandbox)


@contextlib.asynccontextmanager
async def serve_environment(
    download_dir: Path, *, host: str = "127.0.0.1", port: int = 8080
) -> AsyncIterator[Running]:
    """Serve the app against the environment the QES_* variables name."""
    base_url = os.environ.get("QES_BASE_URL")
    auth = BasicAuth(os.environ["QES_WEBHOOK_USER"], os.environ["QES_WEBHOOK_PASSWORD"])
    async with QESClient(
        os.environ.get("QES_CLIENT_ID", ""),
        os.environ.get("QES_CLIENT_SECRET", ""),
        base_url=base_url,
        environment=None if base_url else os.environ.get("QES_ENVIRONMENT"),
    ) as client:
        app = SigningApp(
            client, WebhookReceiver(WebhookDispatcher(), auth), download_dir=download_dir
        )
        async with _served(app, host, port) as url:
            yield Running(url, app, None)


@contextlib.asynccontextmanager
async def _served(app: SigningApp, host: str, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app.make_app(), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server: Any = site._server
        bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


async def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandbox", action="store_true", help="use an embedded sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: any free port with --sandbox, else 8080")
    parser.add_argument("--out", type=Path, default=Path("signed"), help="signed PDFs go here")
    args = parser.parse_args(argv)
    if args.sandbox:
        serving = serve_sandbox(args.out, host=args.host, port=args.port or 0)
    else:
        serving = serve_environment(args.out, host=args.host, port=args.port or 8080)
    async with serving as running:
        mode = "sandbox" if running.sandbox else "live"
        print(f"serving on {running.url} ({mode}); Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))
