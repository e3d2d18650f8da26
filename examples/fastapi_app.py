"""A signing web app in FastAPI: upload a PDF, consent, passcode, download, with webhooks.

The same pages as ``examples/aiohttp_app.py``, built on :mod:`qes_async.asgi`:

* ``GET /``: a form that starts a signing flow (client reference, mobile number, and the
  document: a bundled sample, preselected, or your own PDF); the inputs are checked before
  any flow starts, and a wrong one shows the form again with the error next to its field;
* ``GET /flows/{id}``: shows progress at once and sends the browser on to whatever the flow
  waits for (consent, passcode) or to the end;
* ``GET|POST /flows/{id}/consent``: the documents and legal conditions, approve or decline;
* ``GET|POST /flows/{id}/passcode``: the SMS passcode, with "wrong passcode, N attempts
  left" feedback;
* ``GET /flows/{id}/done``: the outcome; the signed PDFs and the InfoCert contract to
  download (``/download/{n}``, ``/contract``), or after a decline or a failure a way to
  start again;
* ``GET /api/flows/{id}/pending``: what the flow waits for, as JSON (for a front end);
* ``POST /fourthline/qes/{signatureId}``: Fourthline's webhooks, ``webhook_app(receiver)``
  mounted at ``/fourthline`` (same checks and answers as the aiohttp routes), feeding the
  :class:`WebhookDispatcher` that every flow's :class:`HybridWaiter` listens to.

The signer pages use the framework-neutral helpers :func:`~qes_async.asgi.pending_question`,
:func:`~qes_async.asgi.submit_consent` and :func:`~qes_async.asgi.submit_passcode` over a
:class:`SignerInbox`. Run it (``pip install fastapi uvicorn python-multipart``):

* ``python examples/fastapi_app.py --sandbox``: an embedded sandbox (real clock) whose
  webhooks are sent to this app; a banner says so, and the passcode page shows the
  sandbox's SMS (sandbox only, clearly labelled) so you can type it;
* ``python examples/fastapi_app.py`` with ``QES_CLIENT_ID``, ``QES_CLIENT_SECRET``,
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

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from qes_async import (
    Document,
    FlowEvent,
    FlowResult,
    HybridWaiter,
    QESClient,
    QESError,
    Secret,
    SignatureFlow,
    SignerInbox,
    WebhookDispatcher,
    make_pdf,
)
from qes_async.asgi import pending_question, submit_consent, submit_passcode, webhook_app
from qes_async.sandbox import SandboxServer, sandbox_ca
from qes_async.webhooks import BasicAuth, WebhookReceiver

log = logging.getLogger("qes_async.examples.fastapi_app")
SETTLE_SECONDS = 0.3  # how long a page waits for the flow before it shows progress instead
MAX_PDF = 10_000_000  # the largest PDF this app takes (bytes)
MAX_FORM = MAX_PDF + 64 * 1024  # a whole start form: the PDF plus the text fields
MAX_SMALL_FORM = 4 * 1024  # the consent and passcode forms
FORM_TIMEOUT = 30.0  # seconds a form may take to arrive
SAMPLE_TITLE = "Loan agreement"
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class Refused(Exception):
    """A request this app answers with a page and a status (404, 413...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


class SigningApp:
    """The web app's state and pages.

    Args:
        client: the QESClient every flow shares.
        receiver: the webhook receiver; its dispatcher feeds the flows' waiters.
        download_dir: where signed PDFs are written.
        sandbox: the embedded sandbox, only in sandbox mode (banner, SMS passcode shown).
        flow_options: more keyword arguments for every SignatureFlow.
    """

    def __init__(
        self,
        client: QESClient,
        receiver: WebhookReceiver,
        *,
        download_dir: Path,
        sandbox: SandboxServer | None = None,
        **flow_options: Any,
    ) -> None:
        self.client = client
        self.receiver = receiver
        self.inbox = SignerInbox(answer_timeout=30.0)
        self.download_dir = download_dir
        self.sandbox = sandbox
        self.flow_options = flow_options
        self.flows: dict[str, FlowView] = {}

    def make_app(self) -> FastAPI:
        """The FastAPI application with every page and the webhook mount."""

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            await self._stop_flows()

        app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route("/", self.home, methods=["GET"])
        app.add_api_route("/start", self.start, methods=["POST"])
        app.add_api_route("/flows/{flow_id}", self.show, methods=["GET"])
        app.add_api_route("/flows/{flow_id}/consent", self.consent_page, methods=["GET"])
        app.add_api_route("/flows/{flow_id}/consent", self.consent_submit, methods=["POST"])
        app.add_api_route("/flows/{flow_id}/passcode", self.passcode_page, methods=["GET"])
        app.add_api_route("/flows/{flow_id}/passcode", self.passcode_submit, methods=["POST"])
        app.add_api_route("/flows/{flow_id}/done", self.done_page, methods=["GET"])
        app.add_api_route("/flows/{flow_id}/download/{n}", self.download, methods=["GET"])
        app.add_api_route("/flows/{flow_id}/contract", self.contract, methods=["GET"])
        app.add_api_route("/api/flows/{flow_id}/pending", self.pending_json, methods=["GET"])
        # The receiver answers its own absolute paths: /fourthline/qes/{signatureId}.
        app.mount("/fourthline", webhook_app(self.receiver))
        app.add_exception_handler(Refused, self._refused)
        return app

    async def _refused(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        body = f"<p class='error'>{esc(error.message)}</p><p><a href='/'>Start again</a></p>"
        return self.page("Not possible", body, status=error.status)

    # ------------------------------------------------------------------------- start

    async def home(self) -> HTMLResponse:
        return self.start_form({}, {})

    def start_form(
        self, values: dict[str, str], errors: dict[str, str], status: int = 200
    ) -> HTMLResponse:
        def error(name: str) -> str:
            text = errors.get(name)
            return f"<p class='error' id='error-{name}'>{esc(text)}</p>" if text else ""

        mobile_hint = "+31612345678" if self.sandbox is not None else ""
        upload = values.get("source") == "upload"
        body = f"""<form method="post" action="/start" enctype="multipart/form-data">
<p><label>Client reference <input id="client_reference" name="client_reference" required
 value="{esc(values.get("client_reference", "client-1"))}"></label></p>{error("client_reference")}
<p><label>Mobile number <input id="mobile_number" name="mobile_number" required
 placeholder="+31612345678" value="{esc(values.get("mobile_number", mobile_hint))}"></label>
<br><small>In international form: +, country code, number.</small></p>{error("mobile_number")}
<fieldset><legend>Document</legend>
<p><label><input type="radio" id="source-sample" name="source" value="sample"
 {"" if upload else "checked"}> The sample: {esc(SAMPLE_TITLE)} (a one-page PDF)</label></p>
<p><label><input type="radio" id="source-upload" name="source" value="upload"
 {"checked" if upload else ""}> My own PDF:</label>
 <input type="file" id="pdf" name="pdf" accept="application/pdf,.pdf"></p>{error("pdf")}
</fieldset>
<p><button type="submit" id="start">Start signing</button></p></form>"""
        return self.page("Sign a document", body, status=status)

    async def start(self, request: Request) -> Response:
        form = await read_form(request, MAX_FORM)
        try:
            values = {
                k: str(form.get(k, "")).strip()
                for k in ("client_reference", "mobile_number", "source")
            }
            document, errors = await self._document(values, form.get("pdf"))
        finally:
            await form.close()
        if not values["client_reference"] or len(values["client_reference"]) > 128:
            errors["client_reference"] = "Give your reference of the client (1 to 128 characters)."
        if not E164.fullmatch(values["mobile_number"]):
            errors["mobile_number"] = (
                "Give the number in international form: +, the country code and the digits,"
                " no spaces (for example +31612345678)."
            )
        if errors or document is None:
            return self.start_form(values, errors, status=422)
        flow_id = str(uuid.uuid4())
        try:
            flow = SignatureFlow(
                self.client,
                flow_id=flow_id,
                documents=[document],
                mobile_number=values["mobile_number"],
                client_reference=values["client_reference"],
                signer=self.inbox,
                waiter=HybridWaiter(self.client, self.receiver.dispatcher, safety_interval=30.0),
                download_dir=self.download_dir,
                on_event=lambda event: self._record(flow_id, event),
                **self.flow_options,
            )
        except QESError as refused:  # e.g. a document the SDK refuses
            return self.start_form(values, {"pdf": str(refused)}, status=422)
        task = asyncio.ensure_future(flow.run())
        task.add_done_callback(lambda done: _log_outcome(flow_id, done))
        self.flows[flow_id] = FlowView(flow, task)
        return RedirectResponse(f"/flows/{flow_id}", status_code=303)

    async def _document(
        self, values: dict[str, str], upload: object
    ) -> tuple[Document | None, dict[str, str]]:
        """The document to sign, or the error to show next to the file field."""
        if values["source"] != "upload":
            return Document.from_bytes(
                "loan-agreement.pdf", make_pdf(SAMPLE_TITLE), display_name=SAMPLE_TITLE
            ), {}
        if not isinstance(upload, UploadFile) or not upload.filename:
            return None, {"pdf": "Choose a PDF to upload, or pick the sample."}
        data = await upload.read(MAX_PDF + 1)
        if len(data) > MAX_PDF:
            return None, {"pdf": f"The PDF is larger than {MAX_PDF // 1_000_000} MB."}
        if not data.startswith(b"%PDF-"):
            return None, {"pdf": "This file is not a PDF (it does not start with %PDF-)."}
        stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(upload.filename).stem).strip("-").lower()
        title = Path(upload.filename).stem[:100] or "Document"
        return Document.from_bytes(f"{stem[:60] or 'document'}.pdf", data, title), {}

    def _record(self, flow_id: str, event: FlowEvent) -> None:
        view = self.flows.get(flow_id)
        if view is not None:
            view.record(event)

    # ------------------------------------------------------------------- where to go

    async def show(self, flow_id: str) -> Response:
        view = self._view(flow_id)
        await self._settle(flow_id, view)
        waiting = pending_question(self.inbox, flow_id)["waiting_for"]
        if waiting in ("consent", "passcode"):
            return RedirectResponse(f"/flows/{flow_id}/{waiting}", status_code=303)
        if view.task.done():
            return RedirectResponse(f"/flows/{flow_id}/done", status_code=303)
        steps = "".join(f"<li>{esc(kind.replace('_', ' '))}</li>" for kind in view.events[-8:])
        body = f"""<p id="progress">Your signature is being prepared
 (status: <b id="status">{esc(view.status)}</b>). This page refreshes by itself.</p>
<ol id="events">{steps}</ol>"""
        return self.page("Working", body, refresh=1)

    async def _settle(self, flow_id: str, view: FlowView) -> None:
        """Wait a little for the flow to ask the signer something or to end."""
        loop = asyncio.get_running_loop()
        until = loop.time() + SETTLE_SECONDS
        while self.inbox.pending(flow_id) is None and not view.task.done():
            if loop.time() >= until:
                return
            await asyncio.sleep(0.05)

    def _view(self, flow_id: str) -> FlowView:
        view = self.flows.get(flow_id)
        if view is None:
            raise Refused(404, "No such signing flow.")
        return view

    async def pending_json(self, flow_id: str) -> JSONResponse:
        self._view(flow_id)
        return JSONResponse(pending_question(self.inbox, flow_id))

    # ----------------------------------------------------------------------- consent

    async def consent_page(self, flow_id: str) -> Response:
        self._view(flow_id)
        asked = pending_question(self.inbox, flow_id)
        if asked["waiting_for"] != "consent":
            return RedirectResponse(f"/flows/{flow_id}", status_code=303)
        docs = "".join(
            f"<li class='document'>{esc(d['display_name'])} (<code>{esc(d['file_name'])}</code>)"
            "</li>"
            for d in asked["documents"]
        )
        conditions = "".join(
            f"<li class='condition'><a href='{esc(c['url'] or '#')}' rel='noopener'>"
            f"{esc(c['title'])}</a> (version {esc(c['version'])})"
            f"{'<br><small>' + esc(c['text']) + '</small>' if c['text'] else ''}</li>"
            for c in asked["legal_conditions"]
        )
        body = f"""<h2>Documents</h2><ul id="documents">{docs}</ul>
<h2>Legal conditions</h2><ul id="conditions">{conditions}</ul>
<p>By approving you accept these conditions and ask for a qualified electronic signature.
A passcode will be sent to {esc(asked["sent_to"])}.</p>
<form method="post"><button name="decision" value="approve" id="approve">Approve and sign
</button> <button name="decision" value="decline" id="decline">Decline</button></form>"""
        return self.page("Review and approve", body)

    async def consent_submit(self, request: Request, flow_id: str) -> Response:
        self._view(flow_id)
        form = await read_form(request, MAX_SMALL_FORM)
        decision = form.get("decision")
        await form.close()
        if decision not in ("approve", "decline"):
            return self._problem(flow_id, "Choose Approve or Decline.", status=400)
        answer = await submit_consent(self.inbox, flow_id, decision == "approve")
        if answer["accepted"]:
            return RedirectResponse(f"/flows/{flow_id}", status_code=303)
        return self._problem(flow_id, answer["message"])

    # ---------------------------------------------------------------------- passcode

    async def passcode_page(self, flow_id: str) -> Response:
        self._view(flow_id)
        asked = pending_question(self.inbox, flow_id)
        if asked["waiting_for"] != "passcode":
            return RedirectResponse(f"/flows/{flow_id}", status_code=303)
        return self._passcode_form(asked, asked["feedback"])

    async def passcode_submit(self, request: Request, flow_id: str) -> Response:
        self._view(flow_id)
        # Straight from the form into a Secret: no local of this frame holds the passcode
        # or the form around it while the inbox takes it (error trackers record locals).
        code = await read_passcode(request)
        asked = pending_question(self.inbox, flow_id)
        answer = await submit_passcode(self.inbox, flow_id, code)
        if answer["accepted"]:
            return RedirectResponse(f"/flows/{flow_id}", status_code=303)
        if answer["result"] in ("wrong_passcode", "invalid") and asked["waiting_for"] == "passcode":
            status = 422 if answer["result"] == "wrong_passcode" else 400
            return self._passcode_form(asked, answer["message"], status=status)
        return self._problem(flow_id, answer["message"])

    def _passcode_form(
        self, asked: dict[str, Any], feedback: str, status: int = 200
    ) -> HTMLResponse:
        body = f"<p>Enter the passcode sent by SMS to {esc(asked['sent_to'])}.</p>"
        if feedback:
            body += f"<p id='feedback' class='error'>{esc(feedback)}</p>"
        body += """<form method="post"><input id="passcode" name="passcode" required
 autocomplete="one-time-code" inputmode="numeric"> <button id="confirm">Sign</button></form>"""
        body += self._sandbox_sms(asked["signature_id"])
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

    async def done_page(self, flow_id: str) -> Response:
        view = self._view(flow_id)
        if not view.task.done():
            return RedirectResponse(f"/flows/{flow_id}", status_code=303)
        again = "<p><a id='again' href='/'>Sign another document</a></p>"
        if view.task.cancelled() or view.task.exception() is not None:
            error = view.task.exception()
            reason = str(error) if error else "it was stopped"
            body = f"<p id='outcome'>The signature failed: {esc(reason)}</p>{again}"
            return self.page("Not signed", body)
        result = view.task.result()
        if result.outcome.value == "declined":
            body = (
                "<p id='outcome'>Outcome: <b>declined</b></p><p>You declined; nothing was"
                f" signed and the workflow is closed.</p>{again}"
            )
            return self.page("Declined", body)
        links = "".join(
            f"<li><a class='download' href='/flows/{esc(flow_id)}/download/{n}'>"
            f"{esc(Path(d.path).name)}</a> (SHA-256 <code>{esc(d.sha256)}</code>,"
            f" signature {esc(d.validation)})</li>"
            for n, d in enumerate(result.documents)
        )
        body = f"<p id='outcome'>Outcome: <b>{esc(result.outcome.value)}</b></p>"
        if links:
            body += f"<h2>Signed documents</h2><ul id='downloads'>{links}</ul>"
        if result.contract is not None:
            body += (
                "<h2>Your contract with the trust service</h2><p><a id='contract'"
                f" href='/flows/{esc(flow_id)}/contract'>The InfoCert contract</a>"
                f" (<code>{esc(Path(result.contract.path).name)}</code>)</p>"
            )
        return self.page("Done", body + again)

    def _result(self, flow_id: str) -> FlowResult:
        view = self._view(flow_id)
        if not view.task.done() or view.task.cancelled() or view.task.exception():
            raise Refused(404, "Nothing to download.")
        return view.task.result()

    async def download(self, flow_id: str, n: str) -> FileResponse:
        documents = self._result(flow_id).documents
        if not n.isdigit() or int(n) >= len(documents):
            raise Refused(404, "No such document.")
        path = Path(documents[int(n)].path)
        return FileResponse(path, media_type="application/pdf", filename=path.name)

    async def contract(self, flow_id: str) -> FileResponse:
        record = self._result(flow_id).contract
        if record is None:
            raise Refused(404, "This signature has no InfoCert contract.")
        path = Path(record.path)
        return FileResponse(path, media_type="application/pdf", filename=path.name)

    async def _stop_flows(self) -> None:
        for view in self.flows.values():
            view.task.cancel()
        await asyncio.gather(*(v.task for v in self.flows.values()), return_exceptions=True)

    # -------------------------------------------------------------------------- HTML

    def page(
        self, title: str, body: str, *, status: int = 200, refresh: int | None = None
    ) -> HTMLResponse:
        """A whole HTML page; ``body`` must already be escaped."""
        meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
        banner = ""
        if self.sandbox is not None:
            banner = (
                "<div id='sandbox-banner' class='banner'>SANDBOX: test signatures only, "
                "nothing here is legally binding</div>"
            )
        text = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{STYLE}</style></head>
<body>{banner}<main><h1>{esc(title)}</h1>{body}</main></body></html>"""
        return HTMLResponse(text, status_code=status)

    def _problem(self, flow_id: str, message: str, status: int = 409) -> HTMLResponse:
        body = (
            f"<p class='error'>{esc(message)}</p>"
            f"<p><a href='/flows/{esc(flow_id)}'>Continue</a></p>"
        )
        return self.page("Something changed", body, status=status)


STYLE = """body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.45}
main{max-width:40em;margin:2em auto;padding:0 1em}.error{color:#b00}
.banner{background:#c60;color:#fff;padding:.4em 1em;font-weight:bold;text-align:center}
.sandbox{border:2px dashed #c60;padding:.5em;margin-top:2em}fieldset{border:1px solid #ccc}
input[type=text],input:not([type]){padding:.3em;width:16em}button{padding:.4em 1em}"""


def esc(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


async def read_form(request: Request, limit: int) -> FormData:
    """The request's form, at most ``limit`` bytes (declared up front) within FORM_TIMEOUT."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise Refused(411, "Send the form with its length.")
    if int(declared) > limit:
        raise Refused(413, f"The form is larger than {limit // 1000} kB.")
    try:
        return await asyncio.wait_for(request.form(max_files=1, max_fields=20), FORM_TIMEOUT)
    except asyncio.TimeoutError:
        raise Refused(408, "The form did not arrive in time.") from None


async def read_passcode(request: Request) -> Secret | None:
    """The passcode form's field as a :class:`~qes_async.Secret` (None when it is not
    text). The form itself is let go before its files (if any were sent) are closed: a
    failure there cannot show the passcode in this frame's locals."""
    form = await read_form(request, MAX_SMALL_FORM)
    code = _secret(form.get("passcode"))
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    del form
    for file in files:
        await file.close()
    return code


def _secret(value: object) -> Secret | None:
    return Secret(value) if isinstance(value, str) else None


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
    download_dir: Path, *, host: str = "127.0.0.1", port: int = 0, **sandbox_options: Any
) -> AsyncIterator[Running]:
    """Serve the app with an embedded sandbox whose webhooks come to this app
    (``sandbox_options``: more keyword arguments for :class:`SandboxServer`)."""
    user, password = "fourthline", secrets.token_urlsafe(16)
    async with (
        SandboxServer(**sandbox_options) as sandbox,
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
    """Serve ``app`` with uvicorn on this event loop (beside the sandbox and the flows)."""
    config = uvicorn.Config(
        app.make_app(), host=host, port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # the reason it could not start (a port that is taken...)
                raise RuntimeError("the web server stopped before it started")
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await serving


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
