"""The public surface is a promise: a change to it must be deliberate (update this list)."""

from __future__ import annotations

import importlib

import qes_async

FROZEN = [
    "AnswerKind",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BodyPart",
    "CallbackSigner",
    "Clock",
    "ConflictError",
    "ConsentIncompleteError",
    "ConsentRequest",
    "DecodeError",
    "Document",
    "DocumentCheckError",
    "DocumentInfo",
    "DocumentMismatchError",
    "DocumentSource",
    "DocumentSourceError",
    "DownloadRecord",
    "ErrorDetail",
    "Evidence",
    "EvidenceCheck",
    "EvidenceFormatError",
    "EvidenceProblem",
    "FakeClock",
    "FileDocumentSource",
    "FlowError",
    "FlowEvent",
    "FlowEventKind",
    "FlowExpiredError",
    "FlowNotFoundError",
    "FlowOutcome",
    "FlowResult",
    "FlowStore",
    "FlowView",
    "Generation",
    "HybridWaiter",
    "InvalidInputError",
    "InvalidPasscodeError",
    "KYCRequiredError",
    "Lease",
    "LegalCondition",
    "MemoryDocumentSource",
    "MemoryFlowStore",
    "NotFoundError",
    "OutcomeUnknownError",
    "PasscodeExpiredError",
    "PasscodeInfo",
    "PasscodeRequest",
    "PermissionDeniedError",
    "PollingWaiter",
    "QESClient",
    "QESError",
    "RateLimitedError",
    "RequestNotSentError",
    "RestartLimitError",
    "RestartPolicy",
    "RestartReason",
    "RetryPolicy",
    "Routes",
    "SQLiteFlowStore",
    "Secret",
    "SelfieRequest",
    "ServerError",
    "ServiceError",
    "SignatureDetails",
    "SignatureFlow",
    "SignedDocument",
    "SignedNotSavedError",
    "Signer",
    "SignerAnswer",
    "SignerInbox",
    "SignerRequest",
    "StaleStateError",
    "StateFormatError",
    "Status",
    "StatusReport",
    "StatusSource",
    "StatusWaiter",
    "StoredFlow",
    "SystemClock",
    "TLSError",
    "TerminalSigner",
    "Timeouts",
    "TooManyAttemptsError",
    "Transport",
    "TransportError",
    "TransportRequest",
    "TransportResponse",
    "UnprocessableError",
    "UnreachableStatusError",
    "WaitTimeoutError",
    "WebhookDispatcher",
    "WebhookEvent",
    "WebhookWaiter",
    "Workflow",
    "__version__",
    "make_pdf",
]


def test_public_names_are_exactly_the_frozen_list() -> None:
    assert qes_async.__all__ == FROZEN


def test_every_public_name_resolves_to_an_object_with_a_docstring() -> None:
    for name in FROZEN:
        if name == "__version__":
            continue
        value = getattr(qes_async, name)
        assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_public_submodules_import() -> None:
    for module in (
        "qes_async.sandbox",
        "qes_async.webhooks",
        "qes_async.postgres",
        "qes_async.asgi",
        "qes_async.otel",
    ):
        assert importlib.import_module(module).__all__
