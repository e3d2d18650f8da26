"""Input checks done before any request is built: fail early, say what to do.

Pure functions; each raises :class:`InvalidInputError` naming the argument and the fix.
Error messages never repeat a full phone number or a passcode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeGuard

from .._core.errors import InvalidInputError
from .._core.lenient import language_key
from .._core.redact import Secret, mask_phone

__all__ = [
    "DEFAULT_WORKFLOW_NAME",
    "PDF_MAGIC",
    "check_file_name",
    "check_language",
    "check_mobile_number",
    "check_passcode",
    "check_pdf_head",
    "check_signature_id",
    "check_size",
    "check_unique_names",
    "check_workflow_name",
    "is_valid_id",
]

#: Our default ``workflowName``; the real one is agreed with Fourthline per product.
DEFAULT_WORKFLOW_NAME = "qes"
MAX_WORKFLOW_NAME = 100

PDF_MAGIC = b"%PDF-"
# ASCII digits only: ``\d`` also matches other scripts' digits (fullwidth, Arabic-Indic),
# which would pass here and then be refused by the service after a request was sent.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DIGITS = re.compile(r"[0-9]{4,12}")
# URL-safe characters only, and never a dot segment ("." or ".."): an id goes into a URL
# path, where those would name another resource.
_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_DOT_SEGMENTS = (".", "..")


def is_valid_id(value: object) -> TypeGuard[str]:
    """True for an id of 1 to 128 URL-safe characters that is not ``.`` or ``..``.

    The client checks ids it sends with it, the webhook receiver ids it is sent.
    """
    return isinstance(value, str) and bool(_ID.fullmatch(value)) and value not in _DOT_SEGMENTS


def check_mobile_number(number: object) -> None:
    """An E.164 number such as ``+31612345678``: a plus, a country code, no spaces.

    ``number`` may be a :class:`~qes_async._core.redact.Secret`; the plain value is never bound
    to a local here (error trackers record the locals of a traceback's frames).
    """
    if not isinstance(_plain(number), str) or not _E164.fullmatch(_plain(number)):
        shown = (
            mask_phone(_plain(number)) if isinstance(_plain(number), str) else type(number).__name__
        )
        raise InvalidInputError(
            "mobile_number",
            f"{shown!r} is not an E.164 number",
            advice="Pass '+', the country code and the number, digits only (+31612345678).",
        )


def check_passcode(passcode: object) -> None:
    """The SMS passcode: digits only (4 to 12 of them); never echoed back.

    ``passcode`` may be a :class:`~qes_async._core.redact.Secret` (see :func:`check_mobile_number`).
    """
    if not isinstance(_plain(passcode), str) or not _DIGITS.fullmatch(_plain(passcode)):
        raise InvalidInputError(
            "passcode",
            "must be the digits of the SMS passcode (4 to 12 digits, nothing else)",
            advice="Pass the passcode exactly as the signer received it by SMS, as a string.",
        )


def _plain(value: object) -> Any:
    return value.reveal() if isinstance(value, Secret) else value


def check_language(value: object, field: str = "language") -> str:
    """A BCP 47 language tag (``en``, ``EN``, ``en-GB``), kept as given: case is not
    significant in such tags, and the service compares them without it."""
    try:
        language_key(value)  # type: ignore[arg-type]  # checked there
    except ValueError:
        raise InvalidInputError(
            field,
            f"{value!r} is not a BCP 47 language tag",
            advice="Pass a tag such as en, de or en-GB (any case).",
        ) from None
    return str(value)


def check_workflow_name(value: object) -> str:
    """The workflow name agreed with Fourthline: opaque, non-empty and kept as given (its
    case counts); only control characters and surrounding spaces are refused."""
    if (
        not isinstance(value, str)
        or not value
        or value != value.strip()
        or len(value) > MAX_WORKFLOW_NAME
        or not value.isprintable()
    ):
        raise InvalidInputError(
            "workflow_name",
            f"{value!r} is not a workflow name",
            advice="Pass the workflow name agreed with Fourthline, exactly (e.g. QES).",
        )
    return value


def check_signature_id(value: object, field: str = "signature_id") -> str:
    """A non-empty id made of URL-safe characters (it goes into the path)."""
    if not is_valid_id(value):
        raise InvalidInputError(
            field,
            "must be 1 to 128 letters, digits, '.', '_', '~' or '-' (not '.' or '..')",
            advice="Pass the id the service returned (create_workflow's workflow_id).",
        )
    return value


def check_file_name(name: object) -> str:
    """A bare file name: no directory part, no control characters, not '.' or '..'."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or name in (".", "..")
        or any(ch in name for ch in "/\\\x00")
        or any(ord(ch) < 32 for ch in name)
    ):
        raise InvalidInputError(
            "file_name",
            f"{name!r} is not a bare file name",
            advice="Use a plain name such as 'contract.pdf', without folders.",
        )
    return name


def check_unique_names(names: Iterable[str]) -> None:
    """Every document in one upload needs its own file name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInputError(
                "documents",
                f"file name {name!r} appears twice",
                advice="Give every document a distinct file_name.",
            )
        seen.add(name)


def check_size(name: str, size: int, limit: int) -> None:
    """A document must hold bytes, and no more than ``limit`` of them."""
    if size <= 0:
        raise InvalidInputError(
            "documents", f"{name!r} is empty", advice="Upload the PDF's bytes, not an empty file."
        )
    if size > limit:
        raise InvalidInputError(
            "documents",
            f"{name!r} is {_mb(size)}, more than the limit of {_mb(limit)}",
            advice="Make the PDF smaller (compress its images, or split it into documents); "
            "in code, QESClient(max_document_size=...) raises the limit.",
        )


def _mb(size: int) -> str:
    """A size as people read it: 52.4 MB, or 4.1 kB below 100 kB (decimal units)."""
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def check_pdf_head(name: str, head: bytes) -> None:
    """A document must start with the PDF magic bytes ``%PDF-``."""
    if not head.startswith(PDF_MAGIC):
        raise InvalidInputError(
            "documents",
            f"{name!r} is not a PDF (it does not start with %PDF-)",
            advice="Only PDF documents can be signed; convert the file to PDF first.",
        )
