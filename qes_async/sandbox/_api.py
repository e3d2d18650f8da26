"""The contract's endpoints: aiohttp handlers that read the request and call the service.

Every handler checks the bearer token (except the token endpoint), parses its input with
the strict functions of ``_requests`` and turns the service's answer into the contract's
shape. Errors are :class:`ApiRefusal`; the server's middleware writes their body.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from typing import Any

from aiohttp import web

from .._client.operations import OPERATIONS as TABLE
from .._client.pdf import make_pdf
from .._client.routes import Routes
from ._model import ApiRefusal, Signature, StoredDocument, bad_request
from ._requests import (
    parse_approval,
    parse_confirmation,
    parse_documents_metadata,
    parse_json_object,
    parse_language,
    parse_mobile_number,
    parse_multipart,
    parse_token_request,
    parse_workflow,
    require,
)
from ._signing import MissingExtraError, SignerIdentity, sign_pdf
from ._state import QESService

__all__ = ["CURRENT_CALL", "ApiHandlers", "CallState"]


class CallState:
    """What a handler reports about its call to the middleware (for the request log)."""

    __slots__ = ("client_reference", "fault", "processed", "signature_id")

    def __init__(self, fault: str | None = None) -> None:
        self.processed = False
        self.signature_id: str | None = None
        self.client_reference: str | None = None
        self.fault = fault  # the injected fault's kind, for handlers that shape their answer


#: Set by the middleware for each request; handlers mark it (a context variable rather
#: than request storage, so no string keys live on the aiohttp request).
CURRENT_CALL: contextvars.ContextVar[CallState] = contextvars.ContextVar("sandbox_call")

#: The method of each operation, from the SDK's operation table (one declaration each).
OPERATIONS: dict[str, str] = {op.value: spec.method for op, spec in TABLE.items()}
MAX_DOCUMENTS = 20
#: What an ``unreadable_pdf`` fault sends: it passes a ``%PDF-``/``%%EOF`` check, and no
#: PDF reader can parse it (no objects, no cross-reference table).
UNREADABLE_PDF = b"%PDF-1.7\n% this is no PDF: no objects, no xref\n" + b"\x00" * 64 + b"\n%%EOF\n"
#: The names a ``hostile_name`` fault gives a download, in turn.
HOSTILE_NAMES = (
    "A" * 300 + ".pdf",  # over the 255 bytes a file system allows
    "../../../../etc/cron.d/contract.pdf",  # climbs out of the folder
    "..\\..\\windows\\contract.pdf",
    "\u202egnp.pdf",  # a right-to-left override
    "contract.pdf",  # the same name as another document's
    "\u00e9" * 150 + ".pdf",  # 300 bytes of UTF-8 in 150 characters
    ".hidden.pdf",
)
SIGNED_MESSAGE = "The document was signed with a qualified electronic signature (sandbox)."


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _header_safe(name: str) -> str:
    """A hostile name as sent: only what would break the part's header line is replaced
    (quote, CR, LF), so backslashes and bidi characters reach the client."""
    return "".join("_" if c in '"\r\n' else c for c in name)


def _safe_filename(name: str) -> str:
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)
    return cleaned or "document.pdf"


class ApiHandlers:
    """The handlers of the eleven operations, bound to one service."""

    def __init__(self, service: QESService) -> None:
        self.service = service
        self._signed: dict[tuple[str, SignerIdentity], asyncio.Task[bytes]] = {}
        self._hostile = 0  # cycles through HOSTILE_NAMES

    def add_routes(self, app: web.Application, routes: Routes) -> None:
        """Register every operation under its path, named after the operation.

        A GET operation also answers HEAD (same status and headers, no body), as RFC 9110
        asks of every GET.
        """
        for operation, method in OPERATIONS.items():
            path = getattr(routes, operation)
            handler = getattr(self, operation)
            resource = app.router.add_resource(path, name=operation)
            if method == "GET":
                resource.add_route("HEAD", handler)
            resource.add_route(method, handler)

    def _auth(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        self.service.check_token(token.strip() if scheme.lower() == "bearer" else None)

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        return parse_json_object(request.content_type, await request.read())

    @staticmethod
    def _done(request: web.Request) -> None:
        state = CURRENT_CALL.get(None)
        if state is not None:
            state.processed = True

    async def create_token(self, request: web.Request) -> web.Response:
        """``POST /v1/oauth2/token``: client credentials for a bearer token."""
        grant, client_id, secret = parse_token_request(await self._json_body(request))
        token = self.service.issue_token(grant, client_id, secret)
        self._done(request)
        return _json(token)

    async def create_workflow(self, request: web.Request) -> web.Response:
        """``POST /v1/workflows``: 201 with the workflow (= signature) id."""
        self._auth(request)
        reference = parse_workflow(await self._json_body(request), self.service.workflow_names)
        state = CURRENT_CALL.get(None)
        if state is not None:
            state.client_reference = reference
        sig = self.service.create_workflow(reference)
        if state is not None:
            state.signature_id = sig.signature_id
        self._done(request)
        return _json({"workflowId": sig.signature_id, "clientId": sig.client_id}, 201)

    async def upload_documents(self, request: web.Request) -> web.Response:
        """Multipart: a ``metadata`` JSON part, then one ``file`` PDF part per document."""
        self._auth(request)
        parts = parse_multipart(request.headers.get("Content-Type", ""), await request.read())
        require(bool(parts) and parts[0].name == "metadata", "the first part must be metadata")
        metadata = parse_documents_metadata(parts[0].data)
        files = parts[1:]
        require(len(metadata) <= MAX_DOCUMENTS, f"at most {MAX_DOCUMENTS} documents")
        require(len(files) == len(metadata), "one file part per document in metadata")
        docs = []
        for i, ((name, display), part) in enumerate(zip(metadata, files, strict=True)):
            field = f"file[{i}]"
            require(part.name == "file", "document parts must be named file", field)
            require(part.content_type == "application/pdf", "files must be application/pdf", field)
            require(part.filename == name, "the file name must equal its fileName", field)
            if not part.data.startswith(b"%PDF-"):
                raise bad_request("the file is not a PDF", field, code="invalid_document")
            docs.append((name, display, part.data))
        self.service.upload_documents(request.match_info["id"], docs)
        self._done(request)
        return web.Response(status=204)

    async def upload_mobile_number(self, request: web.Request) -> web.Response:
        """``PUT .../mobile-number``: an E.164 number."""
        self._auth(request)
        number = parse_mobile_number(await self._json_body(request))
        self.service.upload_mobile_number(request.match_info["id"], number)
        self._done(request)
        return web.Response(status=204)

    async def upload_selfie(self, request: web.Request) -> web.Response:
        """Multipart with one ``selfie`` part, a JPEG."""
        self._auth(request)
        parts = parse_multipart(request.headers.get("Content-Type", ""), await request.read())
        require(len(parts) == 1 and parts[0].name == "selfie", "exactly one part named selfie")
        require(parts[0].content_type == "image/jpeg", "the selfie must be image/jpeg", "selfie")
        if not parts[0].data.startswith(b"\xff\xd8\xff"):
            raise bad_request("the selfie is not a JPEG", "selfie", code="invalid_selfie")
        self.service.upload_selfie(request.match_info["id"])
        self._done(request)
        return web.Response(status=204)

    async def get_signature_details(self, request: web.Request) -> web.Response:
        """Documents, legal conditions and passcode details."""
        self._auth(request)
        parse_language(request.query.get("language"))
        return _json(self.service.details(request.match_info["id"]))

    async def approve_documents(self, request: web.Request) -> web.Response:
        """Approval of every document (by sha256) and every legal condition."""
        self._auth(request)
        approved, accepted = parse_approval(await self._json_body(request))
        attempt = self.service.approve(request.match_info["id"], approved, accepted)
        self._done(request)
        return _json({"attemptId": attempt})

    async def confirm_signature(self, request: web.Request) -> web.Response:
        """The passcode from the SMS."""
        self._auth(request)
        passcode = parse_confirmation(await self._json_body(request))
        try:
            attempt = self.service.confirm(request.match_info["id"], passcode)
        except ApiRefusal as exc:
            if exc.code in ("invalid_passcode", "too_many_attempts"):
                self._done(request)  # a wrong try is counted: the state did change
            raise
        self._done(request)
        return _json({"attemptId": attempt})

    async def get_signature_status(self, request: web.Request) -> web.Response:
        """The current status."""
        self._auth(request)
        sig = self.service.get(request.match_info["id"])
        return _json(sig.status_body(self.service.string_status_codes))

    async def download_signed_document(self, request: web.Request) -> web.Response:
        """multipart/mixed: a text/plain message, then the signed PDF."""
        self._auth(request)
        sig, doc = self.service.signed_document(
            request.match_info["id"], request.match_info["document_id"]
        )
        try:
            pdf = await self._sign(sig, doc)
        except MissingExtraError as exc:
            raise ApiRefusal(501, "signing_unavailable", str(exc)) from None
        state = CURRENT_CALL.get(None)
        fault = state.fault if state is not None else None
        name = doc.file_name
        if fault == "unreadable_pdf":
            pdf = UNREADABLE_PDF
        elif fault == "hostile_name":
            name = HOSTILE_NAMES[self._hostile % len(HOSTILE_NAMES)]
            self._hostile += 1
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode(),
                SIGNED_MESSAGE.encode(),
                f"\r\n--{boundary}\r\nContent-Type: application/pdf\r\n".encode(),
                b'Content-Disposition: attachment; filename="%s"\r\n\r\n'
                % (_header_safe(name) if fault == "hostile_name" else _safe_filename(name)).encode(
                    "utf-8"
                ),
                pdf,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        return web.Response(
            body=body, headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
        )

    async def _sign(self, sig: Signature, doc: StoredDocument) -> bytes:
        """Sign in a worker thread, once per content and signer; downloads share the result.

        Keyed by what is signed rather than by signature: a test double may hand the same
        signed bytes to every flow that uploads the same PDF for the same person, and
        pyHanko's ~20 ms per signature would otherwise dominate every run with many flows.
        """
        case = sig.case
        identity = SignerIdentity(case.first_name, case.last_name, case.id_document_number)
        key = (doc.sha256, identity)
        task = self._signed.get(key)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(asyncio.to_thread(sign_pdf, doc.content, identity))
            self._signed[key] = task
        return await asyncio.shield(task)

    async def get_infocert_contract(self, request: web.Request) -> web.Response:
        """200 with a PDF for InfoCert, 204 for Namirial."""
        self._auth(request)
        sig = self.service.infocert_contract(request.match_info["id"])
        if sig.case.qtsp != "infocert":
            return web.Response(status=204)
        pdf = make_pdf(f"InfoCert certificate contract\nSignature {sig.signature_id}")
        return web.Response(body=pdf, content_type="application/pdf")

    async def close(self) -> None:
        """Wait for signing still in progress (threads cannot be cancelled)."""
        pending = [t for t in self._signed.values() if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
