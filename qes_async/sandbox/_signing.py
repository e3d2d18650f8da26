"""Real PAdES signatures with a throwaway test CA (pyHanko + cryptography).

The CA and one EC P-256 key are made once per process and cached, so starting a sandbox is
fast; each signer gets its own certificate naming the client (CN, givenName, surname) and
carrying the ID document number (serialNumber). pyHanko is imported lazily: without the
``sandbox`` extra everything else in the sandbox still works, and a download explains
which extra to install.
"""

from __future__ import annotations

import datetime
import threading
from io import BytesIO
from typing import Any

import attrs

from .._flow.pades import import_pyhanko

__all__ = ["MissingExtraError", "SandboxCA", "SignerIdentity", "sandbox_ca", "sign_pdf"]

EXTRA_HINT = "PDF signing needs the sandbox extra: pip install 'qes-async[sandbox]'"


class MissingExtraError(ImportError):
    """pyHanko or cryptography is missing; the message names the extra to install."""


@attrs.frozen
class SignerIdentity:
    """Who the signing certificate names."""

    first_name: str
    last_name: str
    id_document_number: str

    @property
    def common_name(self) -> str:
        """``First Last``."""
        return f"{self.first_name} {self.last_name}"


@attrs.frozen
class SandboxCA:
    """The process-wide test CA: its certificate (PEM/DER) and keys."""

    certificate_pem: bytes
    certificate_der: bytes
    _ca_key: Any = attrs.field(repr=False)
    _ca_cert: Any = attrs.field(repr=False)
    _leaf_key: Any = attrs.field(repr=False)


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError(EXTRA_HINT) from exc
    return x509, hashes, serialization, ec, NameOID


# Downloads are signed on several threads at once. An unguarded lazy cache let two of
# them each make a CA and leaf key on the first burst, so a PDF could be signed with one
# key and carry the certificate of the other: intact, but not verifiable. One lock makes
# each exactly once, and the server makes the CA before it serves its first request.
_LOCK = threading.Lock()
_CA: list[SandboxCA] = []
_LEAVES: dict[SignerIdentity, bytes] = {}
_MAX_LEAVES = 256


def sandbox_ca() -> SandboxCA:
    """The CA of this process (made once, on first use, safely from any thread)."""
    if _CA:
        return _CA[0]
    with _LOCK:
        if not _CA:
            _CA.append(_make_ca())
        return _CA[0]


def _make_ca() -> SandboxCA:
    x509, hashes, serialization, ec, name_oid = _crypto()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(name_oid.COMMON_NAME, "qes_async sandbox test CA"),
            x509.NameAttribute(name_oid.ORGANIZATION_NAME, "qes_async sandbox (not trusted)"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    return SandboxCA(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
        ca_key=ca_key,
        ca_cert=cert,
        leaf_key=ec.generate_private_key(ec.SECP256R1()),
    )


def _leaf_certificate(identity: SignerIdentity) -> bytes:
    """The signer's certificate for the one leaf key (made once per identity)."""
    ca = sandbox_ca()
    cached = _LEAVES.get(identity)
    if cached is not None:
        return cached
    with _LOCK:
        if identity not in _LEAVES:
            if len(_LEAVES) >= _MAX_LEAVES:
                _LEAVES.pop(next(iter(_LEAVES)))
            _LEAVES[identity] = _make_leaf(ca, identity)
        return _LEAVES[identity]


def _make_leaf(ca: SandboxCA, identity: SignerIdentity) -> bytes:
    x509, hashes, serialization, _, name_oid = _crypto()
    subject = x509.Name(
        [
            x509.NameAttribute(name_oid.COUNTRY_NAME, "NL"),
            x509.NameAttribute(name_oid.COMMON_NAME, identity.common_name),
            x509.NameAttribute(name_oid.GIVEN_NAME, identity.first_name),
            x509.NameAttribute(name_oid.SURNAME, identity.last_name),
            x509.NameAttribute(name_oid.SERIAL_NUMBER, identity.id_document_number),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert = ca._ca_cert
    public = ca._leaf_key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca._ca_key.public_key()), False
        )
        .sign(ca._ca_key, hashes.SHA256())
    )
    der: bytes = cert.public_bytes(serialization.Encoding.DER)
    return der


def sign_pdf(pdf: bytes, identity: SignerIdentity) -> bytes:
    """A PAdES-signed copy of ``pdf`` (blocking: run it in a worker thread)."""
    try:
        from asn1crypto import keys, x509

        import_pyhanko()  # first, so its import of DSA does not warn (see there)
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers
        from pyhanko_certvalidator.registry import SimpleCertificateStore
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError(EXTRA_HINT) from exc
    _, _, serialization, _, _ = _crypto()
    ca = sandbox_ca()
    key_der = ca._leaf_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = signers.SimpleSigner(
        signing_cert=x509.Certificate.load(_leaf_certificate(identity)),
        signing_key=keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
            [x509.Certificate.load(ca.certificate_der)]
        ),
    )
    meta = signers.PdfSignatureMetadata(
        field_name="QESSignature",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason="Qualified electronic signature (sandbox)",
        name=identity.common_name,
    )
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    out = signers.sign_pdf(writer, meta, signer=signer)
    signed: bytes = out.getvalue()
    return signed
