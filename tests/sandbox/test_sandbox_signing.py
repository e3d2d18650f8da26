"""The signed document is a real PAdES signature that pyHanko's validator accepts."""

from __future__ import annotations

import email.parser
import email.policy
from io import BytesIO

from asn1crypto import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sandbox_helpers import Api, api, clock, sandbox

from qes_async import make_pdf
from qes_async.sandbox import IdentityCase, SandboxServer, sandbox_ca

__all__ = ["api", "clock", "sandbox"]


def split_mixed(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return [
        (part.get_content_type(), part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


async def test_download_is_multipart_mixed_with_a_validating_pades_pdf(
    api: Api, sandbox: SandboxServer
) -> None:
    sandbox.add_client(
        "ada", IdentityCase(first_name="Ada", last_name="Lovelace", id_document_number="GB99887766")
    )
    sid = await api.to_consent("ada")
    original = make_pdf("Loan contract")
    details = (await api.details(sid)).json
    assert (await api.approve(sid, details)).status == 200
    assert (await api.confirm(sid)).status == 200
    doc = details["documents"][0]
    answer = await api.call("GET", f"/v1/signatures/{sid}/documents/{doc['documentId']}")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("multipart/mixed")
    (text_type, _, text), (pdf_type, filename, pdf) = split_mixed(
        answer.headers["Content-Type"], answer.raw
    )
    assert (text_type, pdf_type, filename) == ("text/plain", "application/pdf", "contract.pdf")
    assert b"signed" in text
    assert pdf.startswith(original[: len(b"%PDF-1.7")])
    [embedded] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    trust = ValidationContext(trust_roots=[x509.Certificate.load(sandbox_ca().certificate_der)])
    status = await async_validate_pdf_signature(embedded, trust)
    assert (status.intact, status.valid, status.trusted, status.bottom_line) == (
        True,
        True,
        True,
        True,
    )
    subject = status.signing_cert.subject.native
    assert (subject["common_name"], subject["given_name"], subject["surname"]) == (
        "Ada Lovelace",
        "Ada",
        "Lovelace",
    )
    assert subject["serial_number"] == "GB99887766"
    again = await api.call("GET", f"/v1/signatures/{sid}/documents/{doc['documentId']}")
    assert split_mixed(again.headers["Content-Type"], again.raw)[1][2] == pdf


async def test_the_ca_is_made_once_per_process() -> None:
    assert sandbox_ca() is sandbox_ca()
    assert sandbox_ca().certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")


async def test_identical_content_for_the_same_person_is_signed_once_per_person(
    api: Api, sandbox: SandboxServer
) -> None:
    """A test double may share a signature between flows that upload the same PDF for the
    same person; another person always gets a signature of their own."""
    sandbox.add_client("jane-1", IdentityCase())
    sandbox.add_client("jane-2", IdentityCase())
    sandbox.add_client("john", IdentityCase(first_name="John", last_name="Roe"))
    signed = {}
    for reference in ("jane-1", "jane-2", "john"):
        sid = await api.to_signed(reference)
        details = (await api.details(sid)).json
        doc = details["documents"][0]
        answer = await api.call("GET", f"/v1/signatures/{sid}/documents/{doc['documentId']}")
        signed[reference] = split_mixed(answer.headers["Content-Type"], answer.raw)[1][2]
    assert signed["jane-1"] == signed["jane-2"]
    assert signed["john"] != signed["jane-1"]
    [embedded] = PdfFileReader(BytesIO(signed["john"])).embedded_signatures
    assert embedded.signer_cert.subject.native["common_name"] == "John Roe"
