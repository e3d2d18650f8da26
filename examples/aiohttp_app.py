"""A signing web app in aiohttp: start a flow, consent, passcode, download, with webhooks.

Pages (plain HTML built from Python strings, every value escaped):

* ``GET /``: a form that starts a signing flow (client reference, mobile number, and a
  sample PDF made with :func:`qes_async.make_pdf`);
* ``GET /flows/{id}``: sends the browser to whatever the flow waits for;
* ``GET|POST /flows/{id}/consent``: the documents and legal conditions, approve or decline;
* ``GET|POST /flows/{id}/passcode``: the SMS passcode, with "wrong passcode, N attempts
  left" feedback;
* ``GET /flows/{id}/done`` and ``/flows/{id}/download/{n}``: the signed PDFs;
* ``POST /fourthline/qes/{signatureId}``: Fourthline's webhooks (a :class:`WebhookReceiver`
  feeding the :class:`WebhookDispatcher` that every flow's :class:`HybridWaiter` listens to).

Each flow runs as a task with a :class:`SignerInbox` as its signer: the flow's questions wait
in the inbox until a page submits the answer. Run it:

* ``python examples/aiohttp_app.py --sandbox``: an embedded sandbox (real clock) whose
  webhooks are sent to this app; the passcode page also shows the sandbox's SMS (sandbox
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
    FlowResult,
    HybridWaiter,
    PasscodeRequest,
    QESClient,
    SignatureFlow,
    SignerInbox,
    WebhookDispatcher,
    make_pdf,
)
from qes_async.sandbox import SandboxServer, sandbox_ca
from qes_async.webhooks import BasicAuth, WebhookReceiver

log = logging.getLogger("qes_async.examples.aiohttp_app")
SETTLE_SECONDS = 8.0  # how long a page waits for the flow to need the signer again


@dataclass
class FlowView:
    """What the pages know about one running flow."""

    flow: SignatureFlow
    task: asyncio.Task[FlowResult]
    document_names: list[str]
    status: str = "starting"
    events: list[str] = field(default_factory=list)

    def record(self, event: FlowEvent) -> None:
        if event.status:
            self.status = event.status
        self.events.append(event.kind.value)


class SigningApp:
    """The web app's state and handlers.

    Args:
        client: the QESClient every flow shares.
        receiver: the webhook receiver; its dispatcher feeds the flows' waiters.
        download_dir: where signed PDFs are written.
        sandbox: the embedded sandbox, only in sandbox mode (shows the SMS passcode).
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

    def make_app(self) -> web.Application:
        """The aiohttp application with every page and the webhook route."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self.home),
                web.post("/start", self.start),
                web.get("/flows/{id}", self.show),
                web.get("/flows/{id}/consent", self.consent_page),
                web.post("/flows/{id}/consent", self.consent_submit),
                web.get("/flows/{id}/passcode", self.passcode_page),
                web.post("/flows/{id}/passcode", self.passcode_submit),
                web.get("/flows/{id}/done", self.done_page),
                web.get("/flows/{id}/download/{n}", self.download),
                *self.receiver.aiohttp_routes(),
            ]
        )
        app.on_cleanup.append(self._stop_flows)
        return app

    # ------------------------------------------------------------------------- start

    async def home(self, request: web.Request) -> web.Response:
        return page(
            "Sign a document",
            """<form method="post" action="/start">
<p><label>Client reference <input id="client_reference" name="client_reference"
 required value="client-1"></label></p>
<p><label>Mobile number <input id="mobile_number" name="mobile_number" required
 placeholder="+31612345678"></label></p>
<p><label>Document title <input id="title" name="title" required
 value="Loan agreement"></label></p>
<p><button type="submit">Start signing</button></p></form>""",
        )

    async def start(self, request: web.Request) -> web.Response:
        form = await request.post()
        title = str(form.get("title", "")).strip() or "Agreement"
        file_name = (re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "doc") + ".pdf"
        flow_id = str(uuid.uuid4())
        flow = SignatureFlow(
            self.client,
            flow_id=flow_id,
            documents=[Document.from_bytes(file_name, make_pdf(title), display_name=title)],
            mobile_number=str(form.get("mobile_number", "")).strip(),
            client_reference=str(form.get("client_reference", "")).strip(),
            signer=self.inbox,
            waiter=HybridWaiter(self.client, self.receiver.dispatcher, safety_interval=30.0),
            download_dir=self.download_dir,
            on_event=lambda event: self._record(flow_id, event),
            **self.flow_options,
        )
        task = asyncio.ensure_future(flow.run())
        task.add_done_callback(lambda done: _log_outcome(flow_id, done))
        self.flows[flow_id] = FlowView(flow, task, [file_name])
        raise web.HTTPSeeOther(f"/flows/{flow_id}")

    def _record(self, flow_id: str, event: FlowEvent) -> None:
        view = self.flows.get(flow_id)
        if view is not None:
            view.record(event)

    # ------------------------------------------------------------------- where to go

    async def show(self, request: web.Request) -> web.Response:
        flow_id, view = self._view(request)
        await self._settle(flow_id, view)
        asked = self.inbox.pending(flow_id)
        if isinstance(asked, ConsentRequest):
            raise web.HTTPSeeOther(f"/flows/{flow_id}/consent")
        if isinstance(asked, PasscodeRequest):
            raise web.HTTPSeeOther(f"/flows/{flow_id}/passcode")
        if view.task.done():
            raise web.HTTPSeeOther(f"/flows/{flow_id}/done")
        return page(
            "Working",
            f"<p>The signature is being processed (status: <b>{esc(view.status)}</b>).</p>",
            refresh=2,
        )

    async def _settle(self, flow_id: str, view: FlowView) -> None:
        """Wait a little for the flow to ask the signer something or to end."""
        loop = asyncio.get_running_loop()
        until = loop.time() + SETTLE_SECONDS
        while self.inbox.pending(flow_id) is None and not view.task.done():
            if loop.time() >= until:
                return
            await asyncio.sleep(0.05)

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
</button> <button name="decision" value="decline" id="decline">Decline</button></form>"""
        return page("Review and approve", body)

    async def consent_submit(self, request: web.Request) -> web.Response:
        flow_id, _ = self._view(request)
        form = await request.post()
        answer = await self.inbox.submit_consent(flow_id, form.get("decision") == "approve")
        if answer.accepted:
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        return _problem(flow_id, answer.message)

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
        form = await request.post()
        asked = self.inbox.pending(flow_id)
        answer = await self.inbox.submit_passcode(flow_id, str(form.get("passcode", "")).strip())
        if answer.accepted:
            raise web.HTTPSeeOther(f"/flows/{flow_id}")
        # AnswerKind is not exported by qes_async yet, hence its value.
        if answer.kind.value == "wrong_passcode" and isinstance(asked, PasscodeRequest):
            return self._passcode_form(asked, answer.message, status=422)
        return _problem(flow_id, answer.message)

    def _passcode_form(
        self, asked: PasscodeRequest, feedback: str, status: int = 200
    ) -> web.Response:
        body = f"<p>Enter the passcode sent by SMS to {esc(asked.masked_mobile_number)}.</p>"
        if feedback:
            body += f"<p id='feedback' class='error'>{esc(feedback)}</p>"
        body += """<form method="post"><input id="passcode" name="passcode" required
 autocomplete="one-time-code" inputmode="numeric"> <button id="confirm">Sign</button></form>"""
        body += self._sandbox_sms(asked.signature_id)
        return page("Enter your passcode", body, status=status)

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
        if view.task.cancelled() or view.task.exception() is not None:
            error = view.task.exception()
            reason = f"{type(error).__name__}: {error}" if error else "it was stopped"
            return page("Not signed", f"<p id='outcome'>The signature failed: {esc(reason)}</p>")
        result = view.task.result()
        links = "".join(
            f"<li><a class='download' href='/flows/{esc(flow_id)}/download/{n}'>"
            f"{esc(Path(d.path).name)}</a> (SHA-256 <code>{esc(d.sha256)}</code>,"
            f" signature {esc(d.validation)})</li>"
            for n, d in enumerate(result.documents)
        )
        body = f"<p id='outcome'>Outcome: <b>{esc(result.outcome.value)}</b></p>"
        if links:
            body += f"<ul id='downloads'>{links}</ul>"
        return page("Done", body)

    async def download(self, request: web.Request) -> web.StreamResponse:
        _, view = self._view(request)
        if not view.task.done() or view.task.cancelled() or view.task.exception():
            raise web.HTTPNotFound(text="Nothing to download.")
        documents = view.task.result().documents
        index = request.match_info["n"]
        if not index.isdigit() or int(index) >= len(documents):
            raise web.HTTPNotFound(text="No such document.")
        path = Path(documents[int(index)].path)
        disposition = f'attachment; filename="{path.name}"'
        return web.FileResponse(path, headers={"Content-Disposition": disposition})

    async def _stop_flows(self, app: web.Application) -> None:
        for view in self.flows.values():
            view.task.cancel()
        await asyncio.gather(*(v.task for v in self.flows.values()), return_exceptions=True)


# --------------------------------------------------------------------------------- HTML


def esc(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, status: int = 200, refresh: int | None = None) -> web.Response:
    """A whole HTML page; ``body`` must already be escaped."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    text = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}
<title>{esc(title)}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
.error{{color:#b00}} .sandbox{{border:2px dashed #c60;padding:.5em;margin-top:2em}}</style>
</head><body><h1>{esc(title)}</h1>{body}</body></html>"""
    return web.Response(text=text, content_type="text/html", status=status)


def _problem(flow_id: str, message: str) -> web.Response:
    body = f"<p class='error'>{esc(message)}</p><p><a href='/flows/{esc(flow_id)}'>Continue</a>"
    return page("Something changed", body + "</p>", status=409)


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
