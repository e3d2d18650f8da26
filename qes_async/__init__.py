"""qes_async: an asyncio SDK for Fourthline's Qualified Electronic Signature (QES) API.

Two levels:

* :class:`QESClient`, one async method per endpoint, with token caching, retries that never
  replay an unsafe call, timeouts, typed errors and streaming uploads and downloads;
* :class:`SignatureFlow`, one coroutine that drives the whole signing ceremony.

``qes_async.sandbox`` serves a stateful stand-in for the service on loopback,
``qes_async.webhooks`` receives Fourthline's webhooks, and ``qes_async.asgi`` serves them
and the signer pages' answers under any ASGI framework (FastAPI, Starlette).

Names are imported lazily, so ``import qes_async`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> private module that defines it
_EXPORTS: dict[str, str] = {
    # time
    "Clock": "_runtime.clock",
    "FakeClock": "_runtime.clock",
    "SystemClock": "_runtime.clock",
    # the client
    "Document": "_client.documents",
    "QESClient": "_client.client",
    "RetryPolicy": "_client.retry",
    "Routes": "_client.routes",
    "Timeouts": "_client.transport",
    "BodyPart": "_client.transport",
    "Transport": "_client.transport",
    "TransportError": "_client.transport",
    "TransportRequest": "_client.transport",
    "TransportResponse": "_client.transport",
    "make_pdf": "_client.pdf",
    # models
    "Attempt": "_core.models",
    "DocumentInfo": "_core.models",
    "ErrorDetail": "_core.models",
    "LegalCondition": "_core.models",
    "PasscodeInfo": "_core.models",
    "SignatureDetails": "_core.models",
    "SignedDocument": "_core.models",
    "Status": "_core.models",
    "StatusReport": "_core.models",
    "WebhookEvent": "_core.models",
    "Workflow": "_core.models",
    # errors
    "AuthenticationError": "_core.errors",
    "BadRequestError": "_core.errors",
    "ConflictError": "_core.errors",
    "ConsentIncompleteError": "_core.errors",
    "DecodeError": "_core.errors",
    "DocumentCheckError": "_core.errors",
    "DocumentMismatchError": "_core.errors",
    "FlowError": "_core.errors",
    "FlowExpiredError": "_core.errors",
    "FlowNotFoundError": "_core.errors",
    "InvalidInputError": "_core.errors",
    "InvalidPasscodeError": "_core.errors",
    "KYCRequiredError": "_core.errors",
    "NotFoundError": "_core.errors",
    "OutcomeUnknownError": "_core.errors",
    "PasscodeExpiredError": "_core.errors",
    "PermissionDeniedError": "_core.errors",
    "QESError": "_core.errors",
    "RateLimitedError": "_core.errors",
    "RequestNotSentError": "_core.errors",
    "RestartLimitError": "_core.errors",
    "ServerError": "_core.errors",
    "ServiceError": "_core.errors",
    "SignedNotSavedError": "_core.errors",
    # secrets held masked (a signer may answer its passcode with one)
    "Secret": "_core.redact",
    "StaleStateError": "_core.errors",
    "TLSError": "_core.errors",
    "TooManyAttemptsError": "_core.errors",
    "UnprocessableError": "_core.errors",
    "UnreachableStatusError": "_core.errors",
    "WaitTimeoutError": "_core.errors",
    # waiting
    "HybridWaiter": "_waiting.waiters",
    "PollingWaiter": "_waiting.waiters",
    "StatusWaiter": "_waiting.waiters",
    "WebhookDispatcher": "_waiting.dispatcher",
    "WebhookWaiter": "_waiting.waiters",
    # the flow
    "FlowEvent": "_flow.driver",
    "FlowOutcome": "_flow.driver",
    "FlowResult": "_flow.driver",
    "FlowView": "_flow.driver",
    "RestartPolicy": "_flow.driver",
    "SignatureFlow": "_flow.driver",
    # the human
    "CallbackSigner": "_signers.signer",
    "ConsentRequest": "_signers.signer",
    "PasscodeRequest": "_signers.signer",
    "Signer": "_signers.signer",
    "SignerInbox": "_signers.signer",
    "TerminalSigner": "_signers.signer",
    # checkpoints
    "FlowStore": "_flow.store",
    "MemoryFlowStore": "_flow.store",
    "SQLiteFlowStore": "_flow.store",
    # documents any worker finds again
    "DocumentSource": "_flow.sources",
    "DocumentSourceError": "_core.errors",
    "FileDocumentSource": "_flow.sources",
    "MemoryDocumentSource": "_flow.sources",
    # added with the flow and waiters
    "AnswerKind": "_signers.signer",
    "DownloadRecord": "_flow.state",
    "FlowEventKind": "_flow.events",
    "Generation": "_flow.state",
    "Lease": "_flow.store",
    "RestartReason": "_flow.machine",
    "SelfieRequest": "_signers.signer",
    "SignerAnswer": "_signers.signer",
    "SignerRequest": "_signers.signer",
    "StateFormatError": "_flow.state",
    "StatusSource": "_waiting.waiters",
    "StoredFlow": "_flow.store",
    # the evidence record
    "Evidence": "_flow.evidence",
    "EvidenceCheck": "_flow.evidence",
    "EvidenceFormatError": "_flow.evidence",
    "EvidenceProblem": "_flow.evidence",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qes_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._client.client import QESClient as QESClient
    from ._client.documents import Document as Document
    from ._client.pdf import make_pdf as make_pdf
    from ._client.retry import RetryPolicy as RetryPolicy
    from ._client.routes import Routes as Routes
    from ._client.transport import BodyPart as BodyPart
    from ._client.transport import Timeouts as Timeouts
    from ._client.transport import Transport as Transport
    from ._client.transport import TransportError as TransportError
    from ._client.transport import TransportRequest as TransportRequest
    from ._client.transport import TransportResponse as TransportResponse
    from ._core.errors import AuthenticationError as AuthenticationError
    from ._core.errors import BadRequestError as BadRequestError
    from ._core.errors import ConflictError as ConflictError
    from ._core.errors import ConsentIncompleteError as ConsentIncompleteError
    from ._core.errors import DecodeError as DecodeError
    from ._core.errors import DocumentCheckError as DocumentCheckError
    from ._core.errors import DocumentMismatchError as DocumentMismatchError
    from ._core.errors import DocumentSourceError as DocumentSourceError
    from ._core.errors import FlowError as FlowError
    from ._core.errors import FlowExpiredError as FlowExpiredError
    from ._core.errors import FlowNotFoundError as FlowNotFoundError
    from ._core.errors import InvalidInputError as InvalidInputError
    from ._core.errors import InvalidPasscodeError as InvalidPasscodeError
    from ._core.errors import KYCRequiredError as KYCRequiredError
    from ._core.errors import NotFoundError as NotFoundError
    from ._core.errors import OutcomeUnknownError as OutcomeUnknownError
    from ._core.errors import PasscodeExpiredError as PasscodeExpiredError
    from ._core.errors import PermissionDeniedError as PermissionDeniedError
    from ._core.errors import QESError as QESError
    from ._core.errors import RateLimitedError as RateLimitedError
    from ._core.errors import RequestNotSentError as RequestNotSentError
    from ._core.errors import RestartLimitError as RestartLimitError
    from ._core.errors import ServerError as ServerError
    from ._core.errors import ServiceError as ServiceError
    from ._core.errors import SignedNotSavedError as SignedNotSavedError
    from ._core.errors import StaleStateError as StaleStateError
    from ._core.errors import TLSError as TLSError
    from ._core.errors import TooManyAttemptsError as TooManyAttemptsError
    from ._core.errors import UnprocessableError as UnprocessableError
    from ._core.errors import UnreachableStatusError as UnreachableStatusError
    from ._core.errors import WaitTimeoutError as WaitTimeoutError
    from ._core.models import Attempt as Attempt
    from ._core.models import DocumentInfo as DocumentInfo
    from ._core.models import ErrorDetail as ErrorDetail
    from ._core.models import LegalCondition as LegalCondition
    from ._core.models import PasscodeInfo as PasscodeInfo
    from ._core.models import SignatureDetails as SignatureDetails
    from ._core.models import SignedDocument as SignedDocument
    from ._core.models import Status as Status
    from ._core.models import StatusReport as StatusReport
    from ._core.models import WebhookEvent as WebhookEvent
    from ._core.models import Workflow as Workflow
    from ._core.redact import Secret as Secret
    from ._flow.driver import FlowEvent as FlowEvent
    from ._flow.driver import FlowOutcome as FlowOutcome
    from ._flow.driver import FlowResult as FlowResult
    from ._flow.driver import FlowView as FlowView
    from ._flow.driver import RestartPolicy as RestartPolicy
    from ._flow.driver import SignatureFlow as SignatureFlow
    from ._flow.events import FlowEventKind as FlowEventKind
    from ._flow.evidence import Evidence as Evidence
    from ._flow.evidence import EvidenceCheck as EvidenceCheck
    from ._flow.evidence import EvidenceFormatError as EvidenceFormatError
    from ._flow.evidence import EvidenceProblem as EvidenceProblem
    from ._flow.machine import RestartReason as RestartReason
    from ._flow.sources import DocumentSource as DocumentSource
    from ._flow.sources import FileDocumentSource as FileDocumentSource
    from ._flow.sources import MemoryDocumentSource as MemoryDocumentSource
    from ._flow.state import DownloadRecord as DownloadRecord
    from ._flow.state import Generation as Generation
    from ._flow.state import StateFormatError as StateFormatError
    from ._flow.store import FlowStore as FlowStore
    from ._flow.store import Lease as Lease
    from ._flow.store import MemoryFlowStore as MemoryFlowStore
    from ._flow.store import SQLiteFlowStore as SQLiteFlowStore
    from ._flow.store import StoredFlow as StoredFlow
    from ._runtime.clock import Clock as Clock
    from ._runtime.clock import FakeClock as FakeClock
    from ._runtime.clock import SystemClock as SystemClock
    from ._signers.signer import AnswerKind as AnswerKind
    from ._signers.signer import CallbackSigner as CallbackSigner
    from ._signers.signer import ConsentRequest as ConsentRequest
    from ._signers.signer import PasscodeRequest as PasscodeRequest
    from ._signers.signer import SelfieRequest as SelfieRequest
    from ._signers.signer import Signer as Signer
    from ._signers.signer import SignerAnswer as SignerAnswer
    from ._signers.signer import SignerInbox as SignerInbox
    from ._signers.signer import SignerRequest as SignerRequest
    from ._signers.signer import TerminalSigner as TerminalSigner
    from ._waiting.dispatcher import WebhookDispatcher as WebhookDispatcher
    from ._waiting.waiters import HybridWaiter as HybridWaiter
    from ._waiting.waiters import PollingWaiter as PollingWaiter
    from ._waiting.waiters import StatusSource as StatusSource
    from ._waiting.waiters import StatusWaiter as StatusWaiter
    from ._waiting.waiters import WebhookWaiter as WebhookWaiter
