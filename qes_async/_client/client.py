"""QESClient: one async method per endpoint of the QES API."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import ssl as _ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from yarl import URL

from .._core.errors import DecodeError, InvalidInputError
from .._core.models import Attempt, SignatureDetails, SignedDocument, StatusReport, Workflow
from .._core.recent import Recent
from .._core.redact import Secret, hold
from .._runtime.clock import Clock, SystemClock
from .._runtime.logs import configure_from_env
from . import protocol as proto
from .auth import TokenCache
from .documents import Document, small_bytes
from .operations import OPERATIONS, Operation
from .retry import RetryPolicy
from .routes import ENVIRONMENTS, Routes
from .sending import Sender
from .transport import BodyPart, Timeouts, Transport, TransportResponse
from .validation import (
    DEFAULT_WORKFLOW_NAME,
    check_file_name,
    check_language,
    check_mobile_number,
    check_passcode,
    check_pdf_head,
    check_signature_id,
    check_size,
    check_unique_names,
    check_workflow_name,
)

__all__ = ["DEFAULT_MAX_DOCUMENT_SIZE", "DEFAULT_MAX_DOWNLOAD_SIZE", "QESClient"]

_STATUS_REQUESTS_KEPT = 256  # prepared status reads, the least recently used dropped first
# The operations whose path holds the signature id alone (what _forget drops per signature).
_SIGNATURE_OPERATIONS = tuple(
    op.name.value for op in OPERATIONS.values() if op.placeholders == frozenset({"id"})
)

DEFAULT_MAX_DOCUMENT_SIZE = 50 * 1024 * 1024
#: The largest signed document accepted (decoded bytes): an upload's largest plus room for
#: the signature, its certificates and revocation data.
DEFAULT_MAX_DOWNLOAD_SIZE = 64 * 1024 * 1024
MAX_SELFIE_SIZE = 10 * 1024 * 1024


class QESClient:
    """The low-level async client: one method per endpoint, typed results, typed errors.

    Args:
        client_id: the API client id.
        client_secret: the API client secret (never shown).
        base_url: the API's base URL; or ``environment`` ("sandbox" or "production").
        session: an aiohttp session to use; never closed by the client. Without one the
            client creates (and closes) its own.
        retry: the :class:`RetryPolicy`. timeouts: the :class:`Timeouts`.
        routes: a :class:`Routes` or a mapping of path overrides.
        clock: the time source (token expiry, ``Retry-After`` dates).
        sleep: the coroutine used to wait between retries (default ``clock.sleep``).
        trace_configs: aiohttp trace configs for the client's own session.
        ssl: an ``ssl.SSLContext`` (for a private CA:
            ``ssl.create_default_context(cafile=...)``). Verification is always on: the
            context goes with every request, so a session's connector cannot weaken it, and
            ``ssl=False`` is refused.
        allow_insecure_http: accept an ``http://`` base URL for a host that is not
            loopback (a test server you trust). Without it only ``https://`` is accepted,
            and ``http://`` only for ``localhost``, ``127.0.0.0/8`` and ``::1``.
        max_document_size: the largest document accepted for upload, in bytes.
        max_download_size: the largest signed document accepted, in decoded bytes (64 MiB
            by default); a larger one is refused with :class:`DecodeError` and no file.
        transport: the :class:`Transport` that moves the bytes, instead of the built-in
            aiohttp one (e.g. :class:`qes_async.testing.MockTransport`); it replaces
            ``session``, ``trace_configs`` and ``ssl``, and is not closed by the client.

    Use it as ``async with QESClient(...) as client:`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        base_url: str | None = None,
        environment: str | None = None,
        session: object | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        routes: Routes | dict[str, str] | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        trace_configs: Iterable[object] = (),
        ssl: _ssl.SSLContext | None = None,
        allow_insecure_http: bool = False,
        max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE,
        max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
        transport: Transport | None = None,
    ) -> None:
        # Held masked from the first line: a traceback's frame locals show Secret('***').
        secret = hold(client_secret)
        del client_secret
        if not client_id or not isinstance(secret.reveal(), str) or not secret:
            raise InvalidInputError(
                "client_id" if not client_id else "client_secret",
                "is empty",
                advice="Pass the API credentials Fourthline issued for this environment.",
            )
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise InvalidInputError(
                "ssl",
                f"must be an ssl.SSLContext, not {ssl!r}",
                advice=(
                    "Verification cannot be turned off. For a server with a private CA, pass "
                    "ssl=ssl.create_default_context(cafile='/path/to/ca.pem')."
                ),
            )
        for name, limit in (
            ("max_document_size", max_document_size),
            ("max_download_size", max_download_size),
        ):
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise InvalidInputError(name, "must be a positive number of bytes")
        trace_configs = list(trace_configs)
        owns_transport = transport is None
        if transport is None:
            from .aiohttp_transport import AiohttpTransport

            transport = AiohttpTransport(session, trace_configs=trace_configs, ssl=ssl)
        elif session is not None or trace_configs or ssl is not None:
            raise InvalidInputError(
                "transport",
                "replaces session, trace_configs and ssl: pass either",
                advice="Configure the session, tracing and TLS on the transport you pass.",
            )
        configure_from_env()
        self.client_id = client_id
        self._secret = secret
        self.base_url = _base_url(base_url, environment)
        check_scheme(self.base_url, allow_insecure_http)
        self.routes = Routes.coerce(routes)
        self._status_requests: Recent[str, proto.Request] = Recent(_STATUS_REQUESTS_KEPT)
        self.clock: Clock = clock or SystemClock()
        self.max_document_size = max_document_size
        self.max_download_size = max_download_size
        self._transport = Sender(
            self.base_url,
            transport=transport,
            retry=retry or RetryPolicy(),
            timeouts=timeouts or Timeouts(),
            clock=self.clock,
            sleep=sleep or self.clock.sleep,
            owns_transport=owns_transport,
        )
        self._tokens = TokenCache(self._fetch_token, self.clock.time)
        self._transport.auth = self._tokens
        self._transport.routes = self.routes  # telemetry's path templates
        self._transport.scrubber.add(secret)

    # ----------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> QESClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (a session you passed stays open)."""
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"QESClient(client_id={self.client_id!r}, base_url={self.base_url!r})"

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._transport.retry

    @property
    def timeouts(self) -> Timeouts:
        """The timeouts in use."""
        return self._transport.timeouts

    async def _fetch_token(self) -> proto.Token:
        request = proto.token_request(self.routes, self.client_id, self._secret.reveal())
        response = await self._transport.send(request)
        token = proto.parse_token(response, self.clock.time())
        self._transport.scrubber.add(token.value)  # a later error echoing it is cut
        return token

    # ----------------------------------------------------------------------- endpoints

    async def create_workflow(
        self, client_reference: str, *, workflow_name: str = DEFAULT_WORKFLOW_NAME
    ) -> Workflow:
        """Create a QES workflow for the client known to you as ``client_reference``.

        ``workflow_name`` is the name agreed with Fourthline for your product, sent exactly
        as given (it is opaque and case-sensitive: ``QES``, ``IDVandQES``...).

        Never replayed: if the answer is lost, :class:`OutcomeUnknownError` is raised.
        """
        check_workflow_name(workflow_name)
        if not client_reference or not isinstance(client_reference, str):
            raise InvalidInputError(
                "client_reference", "is empty", advice="Pass your own id for the end client."
            )
        request = proto.build_request(
            self.routes,
            Operation.CREATE_WORKFLOW,
            json={"workflowName": workflow_name, "clientReference": client_reference},
        )
        return proto.parse_workflow(await self._transport.send(request))

    async def check_documents(self, documents: Sequence[Document]) -> list[Document]:
        """Check documents as :meth:`upload_documents` will, without sending anything.

        Raises:
            InvalidInputError: no documents, a duplicate or path-like name, an empty file,
                one over ``max_document_size``, or one that is not a PDF.
        """
        docs = list(documents)
        if not docs or not all(isinstance(d, Document) for d in docs):
            raise InvalidInputError(
                "documents",
                "must be a non-empty sequence of Document",
                advice="Use Document.from_path(...) or Document.from_bytes(...).",
            )
        check_unique_names(d.file_name for d in docs)
        for doc in docs:
            check_file_name(doc.file_name)
            check_size(doc.file_name, doc.size, self.max_document_size)
            check_pdf_head(doc.file_name, await doc.head())
        return docs

    async def upload_documents(self, signature_id: str, documents: Sequence[Document]) -> None:
        """Upload the PDFs to sign, streamed from disk; checked before anything is sent.

        Raises:
            InvalidInputError: no documents, a duplicate or path-like name, an empty file,
                one over ``max_document_size``, or one that is not a PDF.
        """
        check_signature_id(signature_id)
        docs = await self.check_documents(documents)
        metadata = {
            "documents": [{"fileName": d.file_name, "displayName": d.display_name} for d in docs]
        }
        parts = [BodyPart("metadata", "application/json", data=json.dumps(metadata).encode())]
        parts += [_file_part(d) for d in docs]
        request = proto.build_request(
            self.routes,
            Operation.UPLOAD_DOCUMENTS,
            signature_id=signature_id,
            parts=tuple(parts),
        )
        await self._transport.send(request)

    async def upload_mobile_number(self, signature_id: str, mobile_number: str | Secret) -> None:
        """Set the signer's mobile number (E.164, e.g. ``+31612345678``) for the SMS."""
        number = hold(mobile_number)
        del mobile_number  # no plain copy in this frame while the request is in flight
        check_signature_id(signature_id)
        check_mobile_number(number)
        self._transport.scrubber.add(number)
        request = proto.build_request(
            self.routes,
            Operation.UPLOAD_MOBILE_NUMBER,
            signature_id=signature_id,
            json={"mobileNumber": number.reveal()},
        )
        await self._transport.send(request)

    async def upload_selfie(self, signature_id: str, jpeg: bytes) -> None:
        """Upload a selfie (JPEG bytes) when the status is ``selfie_required``."""
        check_signature_id(signature_id)
        if not isinstance(jpeg, (bytes, bytearray)) or not bytes(jpeg[:3]) == b"\xff\xd8\xff":
            raise InvalidInputError(
                "jpeg", "is not a JPEG image", advice="Pass the selfie's JPEG bytes."
            )
        if len(jpeg) > MAX_SELFIE_SIZE:
            raise InvalidInputError(
                "jpeg", f"is larger than {MAX_SELFIE_SIZE} bytes", advice="Send a smaller JPEG."
            )
        request = proto.build_request(
            self.routes,
            Operation.UPLOAD_SELFIE,
            signature_id=signature_id,
            parts=(BodyPart("selfie", "image/jpeg", filename="selfie.jpg", data=bytes(jpeg)),),
        )
        await self._transport.send(request)

    async def get_signature_details(
        self, signature_id: str, *, language: str | None = None
    ) -> SignatureDetails:
        """The documents, legal conditions and passcode details the signer must see."""
        check_signature_id(signature_id)
        if language is not None:
            check_language(language)
        request = proto.build_request(
            self.routes,
            Operation.GET_SIGNATURE_DETAILS,
            signature_id=signature_id,
            params={"language": language} if language else {},
        )
        return proto.parse_details(await self._transport.send(request))

    async def approve_documents(
        self, signature_id: str, details: SignatureDetails, *, passcode_language: str | None = None
    ) -> Attempt:
        """Approve every document (with its SHA-256) and legal condition in ``details``.

        Never replayed: if the answer is lost, :class:`OutcomeUnknownError` is raised.
        """
        check_signature_id(signature_id)
        if passcode_language is not None:
            check_language(passcode_language, "passcode_language")
        body = proto.approval_body(details, passcode_language)
        request = proto.build_request(
            self.routes, Operation.APPROVE_DOCUMENTS, signature_id=signature_id, json=body
        )
        return proto.parse_attempt(await self._transport.send(request), Operation.APPROVE_DOCUMENTS)

    async def confirm_signature(self, signature_id: str, passcode: str | Secret) -> Attempt:
        """Confirm with the SMS passcode. Never replayed.

        Raises:
            InvalidPasscodeError: a wrong passcode (``attempts_left`` tells how many remain).
            TooManyAttemptsError: the tries are spent; a new workflow is needed.
        """
        code = hold(passcode)
        del passcode  # no plain copy in this frame while the request is in flight
        check_signature_id(signature_id)
        check_passcode(code)
        self._transport.scrubber.add(code)
        request = proto.build_request(
            self.routes,
            Operation.CONFIRM_SIGNATURE,
            signature_id=signature_id,
            json={"passcode": code.reveal()},
        )
        return proto.parse_attempt(await self._transport.send(request), Operation.CONFIRM_SIGNATURE)

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        """The signature's status (unknown status strings are kept, never an error)."""
        request = self._status_requests.recent(signature_id)
        if request is None:
            check_signature_id(signature_id)
            # Waiters read the same signature's status again and again: build it once.
            request = self._status_requests.keep(
                signature_id,
                proto.build_request(
                    self.routes, Operation.GET_SIGNATURE_STATUS, signature_id=signature_id
                ),
            )
        status, head, body, _ = await self._transport.call(request)
        return proto.status_report(status, head, body, self._transport.scrubber, signature_id)

    def _forget(self, signature_id: str, document_ids: Iterable[str] = ()) -> None:
        """Drop what is cached for one signature: its prepared status read and the parsed
        URLs of its paths (``document_ids``: the downloads'). Called when a flow ends, so
        a long-lived client does not keep finished signatures until they are evicted.
        Only caches: a later call for the signature builds them again."""
        self._status_requests.pop(signature_id, None)
        paths = [self.routes.path(op, id=signature_id) for op in _SIGNATURE_OPERATIONS]
        paths += [
            self.routes.path(Operation.DOWNLOAD_SIGNED_DOCUMENT, id=signature_id, document_id=doc)
            for doc in document_ids
        ]
        self._transport.forget_paths(paths)

    async def download_signed_document(
        self,
        signature_id: str,
        document_id: str,
        destination: str | os.PathLike[str],
        *,
        keep: Collection[str] | None = None,
    ) -> SignedDocument:
        """Stream a signed document into the folder ``destination``.

        The file appears atomically (temp file, fsync, rename) or not at all, under the
        server's file name reduced to a bare ``.pdf`` name of at most 200 bytes. It never
        replaces a file: if the name is taken, ``<name>-<first 12 characters of the
        document id>.pdf``, then ``...-2.pdf``, is used. ``keep``, for a caller that
        tracks its own files (as :class:`SignatureFlow` does), protects only the names
        listed and replaces any other file of the chosen name.

        Raises:
            InvalidInputError: ``destination`` is not an existing folder.
            DecodeError: the answer is not a (complete) PDF.
        """
        check_signature_id(signature_id)
        check_signature_id(document_id, "document_id")
        folder = Path(destination)
        if not await asyncio.to_thread(folder.is_dir):
            raise InvalidInputError(
                "destination", "is not an existing folder", advice="Create the folder first."
            )
        request = proto.build_request(
            self.routes,
            Operation.DOWNLOAD_SIGNED_DOCUMENT,
            signature_id=signature_id,
            document_id=document_id,
            headers={"Accept": "multipart/mixed, application/pdf"},
        )

        # The streaming writer loads with the first download, not with the client.
        from .download import consume_signed_document

        async def consume(resp: TransportResponse) -> SignedDocument:
            return await consume_signed_document(
                resp, folder, document_id, keep, limit=self.max_download_size
            )

        document: SignedDocument
        _, document = await self._transport.exchange(request, consume)
        return document

    async def get_infocert_contract(self, signature_id: str) -> bytes | None:
        """The InfoCert contract PDF, or None when the flow went to Namirial (204)."""
        check_signature_id(signature_id)
        request = proto.build_request(
            self.routes,
            Operation.GET_INFOCERT_CONTRACT,
            signature_id=signature_id,
            headers={"Accept": "application/pdf"},
        )
        response = await self._transport.send(request)
        if response.status == 204 or not response.body:
            return None
        from .download import TAIL, pdf_defect

        defect = pdf_defect(response.body, response.body[-TAIL:])
        if defect is not None:  # a cut PDF must not be saved as the contract
            raise DecodeError(
                f"the InfoCert contract {defect}",
                status=response.status,
                body=response.body,
                request_id=response.request_id,
                operation=Operation.GET_INFOCERT_CONTRACT,
            )
        return response.body


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _file_part(doc: Document) -> BodyPart:
    """A document's part of the upload: a small in-memory one as bytes of known length
    (the body goes with Content-Length), any other streamed in chunks (a file is read off
    the event loop, a chunk at a time)."""
    data = small_bytes(doc)
    if data is not None:
        return BodyPart("file", "application/pdf", filename=doc.file_name, data=data)
    return BodyPart("file", "application/pdf", filename=doc.file_name, source=doc.chunks)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_scheme(base_url: str, allow_insecure_http: bool) -> None:
    """Only ``https://``; ``http://`` for loopback hosts or with the explicit opt-in."""
    try:
        url = URL(base_url)
    except (TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise InvalidInputError(
            "base_url",
            f"{base_url!r} is not an http(s) URL with a host",
            advice="Pass the API's base URL, such as https://api.fourthline.com.",
        )
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise InvalidInputError(
            "base_url",
            f"uses http:// for {url.host}: the client secret, the tokens and the signer's "
            "data would cross the network unencrypted",
            advice=(
                "Use https://. For a test server you trust on another host, pass "
                "allow_insecure_http=True (http:// to loopback hosts is always accepted)."
            ),
        )


def _base_url(base_url: str | None, environment: str | None) -> str:
    if base_url and environment:
        raise InvalidInputError(
            "base_url", "and environment were both given", advice="Pass only one of them."
        )
    if base_url:
        return base_url
    name = environment or "sandbox"
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise InvalidInputError(
            "environment",
            f"unknown environment {name!r}",
            advice=f"Use one of {', '.join(sorted(ENVIRONMENTS))}, or pass base_url.",
        ) from None
