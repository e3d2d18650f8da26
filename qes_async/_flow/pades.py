"""PAdES validation of downloaded PDFs with pyHanko, when it is installed.

Blocking (pyHanko parses and hashes the whole file): the flow runs :func:`validate_pdf` in a
worker thread.  Import this module lazily; without pyHanko every document is reported as
``not_checked`` rather than failing.
"""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

__all__ = ["PadesResult", "pyhanko_available", "validate_pdf", "validate_pdf_once"]

VALID = "valid"  # intact, and trusted when trust roots were given; names the client
UNTRUSTED = "untrusted"  # intact, but no chain to a given trust root (or none given)
INVALID = "invalid"  # broken, unsigned, or the certificate names someone else
NOT_CHECKED = "not_checked"  # pyHanko is not installed or validation is off
UNREADABLE = "unreadable"  # looks like a PDF (%PDF- ... %%EOF) but cannot be parsed


@attrs.frozen
class PadesResult:
    """The outcome of validating one PDF's signatures."""

    outcome: str
    detail: str = ""
    signer: str | None = None
    # What the evidence record keeps of the (last) signature checked; None when unread.
    cert_subject: str | None = attrs.field(default=None, repr=False)
    cert_serial: str | None = None
    issuer: str | None = None
    signing_time: str | None = None  # as the signer reported it, RFC 3339
    trusted: bool | None = None

    def as_evidence(self) -> dict[str, object]:
        """The validation as the evidence record keeps it."""
        return {
            "outcome": self.outcome,
            "detail": self.detail or None,
            "signer_name": self.signer,
            "cert_subject": self.cert_subject,
            "cert_serial": self.cert_serial,
            "issuer": self.issuer,
            "signing_time": self.signing_time,
            "trusted": self.trusted,
        }


def pyhanko_available() -> bool:
    """True when pyHanko can be imported."""
    try:
        import_pyhanko()
    except ImportError:
        return False
    return True


_imported = threading.Lock()


def import_pyhanko() -> None:
    """Import pyHanko's signing and validation modules (once; ImportError without them).

    Recent cryptography releases (51) warn (a ``UserWarning``, shown by default) when DSA is
    imported, and pyHanko's signer module imports it: the warning is about pyHanko, not
    anything an app of ours can change, so that one warning is hidden while pyHanko loads.
    """
    with _imported:
        if "pyhanko.sign.validation" in sys.modules and "pyhanko.sign.signers" in sys.modules:
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"pyhanko\.")
            import pyhanko.sign.signers
            import pyhanko.sign.validation  # noqa: F401


class _QuietInValidation(logging.Filter):
    """Drops pyHanko's records from threads that are validating for us.

    pyHanko logs certificate subjects (which hold the client's ID document number) and
    path-building tracebacks; the outcome is in our result already, so none of it belongs in
    the application's log.  Other uses of pyHanko in the same process keep their logs.
    """

    threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return threading.get_ident() not in self.threads


_QUIET = _QuietInValidation()


@contextmanager
def _quiet_pyhanko() -> Iterator[None]:
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("pyhanko"):
            logger = logging.getLogger(name)
            if _QUIET not in logger.filters:
                logger.addFilter(_QUIET)
    _QUIET.threads.add(threading.get_ident())
    try:
        yield
    finally:
        _QUIET.threads.discard(threading.get_ident())


def _load_roots(roots: Sequence[bytes]) -> list[Any]:
    from asn1crypto import pem, x509

    certs = []
    for data in roots:
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        certs.append(x509.Certificate.load(data))
    return certs


def _names(cert: Any) -> set[str]:
    subject = cert.subject.native
    parts = [subject.get("common_name"), subject.get("given_name"), subject.get("surname")]
    found = {str(p).casefold() for p in parts if p}
    given, surname = subject.get("given_name"), subject.get("surname")
    if given and surname:
        found.add(f"{given} {surname}".casefold())
    return found


def validate_pdf(
    path: str | Path, *, trust_roots: Sequence[bytes] = (), expected_name: str | None = None
) -> PadesResult:
    """Validate every signature in the PDF at ``path`` (blocking).

    Args:
        trust_roots: CA certificates (DER or PEM) the signer's chain must reach; with none
            the result is at best ``untrusted``.
        expected_name: the client's name ("First Last"); the signing certificate must name
            them (common name, or given name and surname).
    """
    if not pyhanko_available():
        return PadesResult(NOT_CHECKED, "pyHanko is not installed")
    from pyhanko_certvalidator import ValidationContext

    roots = _load_roots(trust_roots)
    context = ValidationContext(trust_roots=roots, allow_fetching=False)
    with _quiet_pyhanko(), Path(path).open("rb") as handle:
        try:
            return _check_signatures(handle, context, roots, expected_name)
        except OSError:
            raise  # the file itself (gone, unreadable disk): not a verdict on its bytes
        except Exception as exc:  # any parser failure is a verdict on the bytes
            # pyHanko raises PdfReadError, and a damaged structure can surface as
            # KeyError, ValueError and others; none may escape the flow. Only the class
            # name goes into the detail: the parser's message may quote the document.
            return PadesResult(UNREADABLE, f"pyHanko cannot read it ({type(exc).__name__})")


def _check_signatures(
    handle: Any, context: Any, roots: Sequence[Any], expected_name: str | None
) -> PadesResult:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature

    reader = PdfFileReader(handle, strict=False)
    signatures = reader.embedded_signatures
    if not signatures:
        return PadesResult(INVALID, "the PDF carries no signature")
    outcome, detail, facts = VALID, "", {}
    for embedded in signatures:
        status = validate_pdf_signature(embedded, signer_validation_context=context)
        # the name for logs and events; the subject (which also holds the ID document
        # number) only for the integrator's own evidence record
        facts = _facts(status)
        if not (status.intact and status.valid):
            return PadesResult(INVALID, "a signature does not match the document", **facts)
        if expected_name and expected_name.casefold() not in _names(status.signing_cert):
            return PadesResult(INVALID, "the signing certificate names someone else", **facts)
        if not (roots and status.trusted):
            outcome, detail = UNTRUSTED, "no chain to a given trust root"
    return PadesResult(outcome, detail, **facts)


def _facts(status: Any) -> dict[str, Any]:
    cert = status.signing_cert
    when = getattr(status, "signer_reported_dt", None)
    signing_time = None
    if when is not None:
        signing_time = when.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "signer": cert.subject.native.get("common_name"),
        "cert_subject": cert.subject.human_friendly,
        "cert_serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.human_friendly,
        "signing_time": signing_time,
        "trusted": bool(status.trusted),
    }


_RESULTS: OrderedDict[tuple[str, tuple[bytes, ...], str | None], PadesResult] = OrderedDict()
_RESULTS_KEPT = 1024


def validate_pdf_once(
    path: str | Path,
    sha256: str,
    *,
    trust_roots: Sequence[bytes] = (),
    expected_name: str | None = None,
) -> PadesResult:
    """:func:`validate_pdf`, remembered by the file's SHA-256 (blocking).

    The outcome depends only on the bytes, the trust roots and the expected name, so
    identical documents (a test run, a re-download after a crash) are checked once. Real
    signed documents differ from each other, so this never serves a stale answer for them.
    """
    key = (sha256, tuple(trust_roots), expected_name)
    with _RESULTS_LOCK:
        known = _RESULTS.get(key)
    if known is not None:
        return known
    result = validate_pdf(path, trust_roots=trust_roots, expected_name=expected_name)
    with _RESULTS_LOCK:
        _RESULTS[key] = result
        while len(_RESULTS) > _RESULTS_KEPT:
            _RESULTS.popitem(last=False)
    return result


_RESULTS_LOCK = threading.Lock()
