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
    "Clock": "_clock",
    "FakeClock": "_clock",
    "SystemClock": "_clock",
    # the client
    "Document": "_documents",
    "QESClient": "_client",
    "RetryPolicy": "_retry",
    "Routes": "_routes",
    "Timeouts": "_transport",
    "make_pdf": "_pdf",
    # models
    "Attempt": "_models",
    "DocumentInfo": "_models",
    "ErrorDetail": "_models",
    "LegalCondition": "_models",
    "PasscodeInfo": "_models",
    "SignatureDetails": "_models",
    "SignedDocument": "_models",
    "Status": "_models",
    "StatusReport": "_models",
    "WebhookEvent": "_models",
    "Workflow": "_models",
    # errors
    "AuthenticationError": "_errors",
    "BadRequestError": "_errors",
    "ConflictError": "_errors",
    "ConsentIncompleteError": "_errors",
    "DecodeError": "_errors",
    "DocumentCheckError": "_errors",
    "DocumentMismatchError": "_errors",
    "FlowError": "_errors",
    "FlowExpiredError": "_errors",
    "FlowNotFoundError": "_errors",
    "InvalidInputError": "_errors",
    "InvalidPasscodeError": "_errors",
    "KYCRequiredError": "_errors",
    "NotFoundError": "_errors",
    "OutcomeUnknownError": "_errors",
    "PasscodeExpiredError": "_errors",
    "PermissionDeniedError": "_errors",
    "QESError": "_errors",
    "RateLimitedError": "_errors",
    "RequestNotSentError": "_errors",
    "RestartLimitError": "_errors",
    "ServerError": "_errors",
    "ServiceError": "_errors",
    "SignedNotSavedError": "_errors",
    "StaleStateError": "_errors",
    "TLSError": "_errors",
    "TooManyAttemptsError": "_errors",
    "UnprocessableError": "_errors",
    "UnreachableStatusError": "_errors",
    "WaitTimeoutError": "_errors",
    # waiting
    "HybridWaiter": "_waiters",
    "PollingWaiter": "_waiters",
    "StatusWaiter": "_waiters",
    "WebhookDispatcher": "_dispatcher",
    "WebhookWaiter": "_waiters",
    # the flow
    "FlowEvent": "_flow",
    "FlowOutcome": "_flow",
    "FlowResult": "_flow",
    "FlowView": "_flow",
    "RestartPolicy": "_flow",
    "SignatureFlow": "_flow",
    # the human
    "CallbackSigner": "_signer",
    "ConsentRequest": "_signer",
    "PasscodeRequest": "_signer",
    "Signer": "_signer",
    "SignerInbox": "_signer",
    "TerminalSigner": "_signer",
    # checkpoints
    "FlowStore": "_store",
    "MemoryFlowStore": "_store",
    "SQLiteFlowStore": "_store",
    # added with the flow and waiters
    "AnswerKind": "_signer",
    "DownloadRecord": "_flow_state",
    "FlowEventKind": "_flow_events",
    "Generation": "_flow_state",
    "Lease": "_store",
    "RestartReason": "_flow_machine",
    "SelfieRequest": "_signer",
    "SignerAnswer": "_signer",
    "SignerRequest": "_signer",
    "StateFormatError": "_flow_state",
    "StatusSource": "_waiters",
    "StoredFlow": "_store",
    # the evidence record
    "Evidence": "_evidence",
    "EvidenceCheck": "_evidence",
    "EvidenceFormatError": "_evidence",
    "EvidenceProblem": "_evidence",
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
    from ._client import QESClient as QESClient
    from ._clock import Clock as Clock
    from ._clock import FakeClock as FakeClock
    from ._clock import SystemClock as SystemClock
    from ._dispatcher import WebhookDispatcher as WebhookDispatcher
    from ._documents import Document as Document
    from ._errors import AuthenticationError as AuthenticationError
    from ._errors import BadRequestError as BadRequestError
    from ._errors import ConflictError as ConflictError
    from ._errors import ConsentIncompleteError as ConsentIncompleteError
    from ._errors import DecodeError as DecodeError
    from ._errors import DocumentCheckError as DocumentCheckError
    from ._errors import DocumentMismatchError as DocumentMismatchError
    from ._errors import FlowError as FlowError
    from ._errors import FlowExpiredError as FlowExpiredError
    from ._errors import FlowNotFoundError as FlowNotFoundError
    from ._errors import InvalidInputError as InvalidInputError
    from ._errors import InvalidPasscodeError as InvalidPasscodeError
    from ._errors import KYCRequiredError as KYCRequiredError
    from ._errors import NotFoundError as NotFoundError
    from ._errors import OutcomeUnknownError as OutcomeUnknownError
    from ._errors import PasscodeExpiredError as PasscodeExpiredError
    from ._errors import PermissionDeniedError as PermissionDeniedError
    from ._errors import QESError as QESError
    from ._errors import RateLimitedError as RateLimitedError
    from ._errors import RequestNotSentError as RequestNotSentError
    from ._errors import RestartLimitError as RestartLimitError
    from ._errors import ServerError as ServerError
    from ._errors import ServiceError as ServiceError
    from ._errors import SignedNotSavedError as SignedNotSavedError
    from ._errors import StaleStateError as StaleStateError
    from ._errors import TLSError as TLSError
    from ._errors import TooManyAttemptsError as TooManyAttemptsError
    from ._errors import UnprocessableError as UnprocessableError
    from ._errors import UnreachableStatusError as UnreachableStatusError
    from ._errors import WaitTimeoutError as WaitTimeoutError
    from ._evidence import Evidence as Evidence
    from ._evidence import EvidenceCheck as EvidenceCheck
    from ._evidence import EvidenceFormatError as EvidenceFormatError
    from ._evidence import EvidenceProblem as EvidenceProblem
    from ._flow import FlowEvent as FlowEvent
    from ._flow import FlowOutcome as FlowOutcome
    from ._flow import FlowResult as FlowResult
    from ._flow import FlowView as FlowView
    from ._flow import RestartPolicy as RestartPolicy
    from ._flow import SignatureFlow as SignatureFlow
    from ._flow_events import FlowEventKind as FlowEventKind
    from ._flow_machine import RestartReason as RestartReason
    from ._flow_state import DownloadRecord as DownloadRecord
    from ._flow_state import Generation as Generation
    from ._flow_state import StateFormatError as StateFormatError
    from ._models import Attempt as Attempt
    from ._models import DocumentInfo as DocumentInfo
    from ._models import ErrorDetail as ErrorDetail
    from ._models import LegalCondition as LegalCondition
    from ._models import PasscodeInfo as PasscodeInfo
    from ._models import SignatureDetails as SignatureDetails
    from ._models import SignedDocument as SignedDocument
    from ._models import Status as Status
    from ._models import StatusReport as StatusReport
    from ._models import WebhookEvent as WebhookEvent
    from ._models import Workflow as Workflow
    from ._pdf import make_pdf as make_pdf
    from ._retry import RetryPolicy as RetryPolicy
    from ._routes import Routes as Routes
    from ._signer import AnswerKind as AnswerKind
    from ._signer import CallbackSigner as CallbackSigner
    from ._signer import ConsentRequest as ConsentRequest
    from ._signer import PasscodeRequest as PasscodeRequest
    from ._signer import SelfieRequest as SelfieRequest
    from ._signer import Signer as Signer
    from ._signer import SignerAnswer as SignerAnswer
    from ._signer import SignerInbox as SignerInbox
    from ._signer import SignerRequest as SignerRequest
    from ._signer import TerminalSigner as TerminalSigner
    from ._store import FlowStore as FlowStore
    from ._store import Lease as Lease
    from ._store import MemoryFlowStore as MemoryFlowStore
    from ._store import SQLiteFlowStore as SQLiteFlowStore
    from ._store import StoredFlow as StoredFlow
    from ._transport import Timeouts as Timeouts
    from ._waiters import HybridWaiter as HybridWaiter
    from ._waiters import PollingWaiter as PollingWaiter
    from ._waiters import StatusSource as StatusSource
    from ._waiters import StatusWaiter as StatusWaiter
    from ._waiters import WebhookWaiter as WebhookWaiter
