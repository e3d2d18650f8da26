"""Bad input on the client side: a typed error before a single byte reaches the service.

Each case runs against a live sandbox and then asserts that its request log is empty (not
even a token request), so "refused before sending" is checked, not assumed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import register_secret

from qes_async import Document, FakeClock, InvalidInputError, QESClient, make_pdf
from qes_async.sandbox import SandboxServer

SIG = "sig-1"
PDF = make_pdf("contract")
# Digits of another script: ``str.isdigit`` and ``\\d`` accept them, the service does not.
FULLWIDTH_PASSCODE = "".join(chr(0xFF10 + int(c)) for c in "123456")
FULLWIDTH_MOBILE = "".join(chr(0xFF10 + int(c)) for c in "31612345678")
Call = Callable[[QESClient], Awaitable[object]]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(clock=FakeClock(), seed=3) as server:
        register_secret(server.client_secret)
        yield server


async def _refused(sandbox: SandboxServer, call: Call, **client_kw: Any) -> InvalidInputError:
    async with QESClient(
        sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, **client_kw
    ) as client:
        with pytest.raises(InvalidInputError) as info:
            await call(client)
    assert sandbox.request_log == []
    return info.value


@pytest.mark.parametrize(
    "number",
    [
        "0612345678",
        "+31 6 1234 5678",
        "+0612345678",
        "+31-612345678",
        "+3161234567890123",
        "",
        "+",
        "+" + FULLWIDTH_MOBILE,
    ],
)
async def test_invalid_mobile_numbers_are_refused_unsent(
    sandbox: SandboxServer, number: str
) -> None:
    if len(number) >= 4:
        register_secret(number)
    error = await _refused(sandbox, lambda c: c.upload_mobile_number(SIG, number))
    assert error.field == "mobile_number"


@pytest.mark.parametrize("number", [31687654321, None, b"+31687654321", ["+31687654321"]])
async def test_mobile_numbers_of_the_wrong_type_are_refused_unsent(
    sandbox: SandboxServer, number: Any
) -> None:
    error = await _refused(sandbox, lambda c: c.upload_mobile_number(SIG, number))
    assert error.field == "mobile_number"
    assert "31687654321" not in str(error)


@pytest.mark.parametrize(
    "passcode", ["12a456", "abcdef", "12 456", FULLWIDTH_PASSCODE, "123", "", 123456]
)
async def test_passcodes_with_letters_or_wrong_types_are_refused_unsent(
    sandbox: SandboxServer, passcode: Any
) -> None:
    error = await _refused(sandbox, lambda c: c.confirm_signature(SIG, passcode))
    assert error.field == "passcode"
    if isinstance(passcode, str) and passcode:
        assert passcode not in str(error)


@pytest.mark.parametrize(
    ("documents", "fragment"),
    [
        ([], "non-empty sequence"),
        ([Document.from_bytes("a.pdf", b"")], "is empty"),
        ([Document.from_bytes("a.pdf", b"PK\x03\x04 a zip file")], "is not a PDF"),
        ([Document.from_bytes("a.pdf", b"<html>%PDF-</html>")], "is not a PDF"),
        ([Document.from_bytes("a.pdf", PDF), Document.from_bytes("a.pdf", PDF)], "appears twice"),
        ([Document.from_bytes("a.pdf", make_pdf(padding=5000))], "more than the limit of 4.1 kB"),
        (["a.pdf"], "non-empty sequence"),
        ([PDF], "non-empty sequence"),
        (None, "non-empty sequence"),
    ],
)
async def test_bad_documents_are_refused_unsent(
    sandbox: SandboxServer, documents: Any, fragment: str
) -> None:
    error = await _refused(
        sandbox, lambda c: c.upload_documents(SIG, documents or []), max_document_size=4096
    )
    assert error.field == "documents"
    assert fragment in str(error)


@pytest.mark.parametrize(
    "name", ["../evil.pdf", "dir/a.pdf", "..\\a.pdf", "/etc/passwd", "..", ".", " ", "a\nb.pdf"]
)
def test_path_like_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Document.from_bytes(name, PDF)
    assert info.value.field == "file_name"


async def test_a_missing_or_folder_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as missing:
        Document.from_path(tmp_path / "nope.pdf")
    with pytest.raises(InvalidInputError) as folder:
        Document.from_path(tmp_path)
    assert (missing.value.field, folder.value.field) == ("path", "path")


@pytest.mark.parametrize("signature_id", ["", "a/b", "../x", ".", "..", "a b", "x?y=1", 42, None])
async def test_bad_signature_ids_are_refused_unsent(
    sandbox: SandboxServer, signature_id: Any
) -> None:
    error = await _refused(sandbox, lambda c: c.get_signature_status(signature_id))
    assert error.field == "signature_id"


@pytest.mark.parametrize("jpeg", [b"", b"GIF89a", "\xff\xd8\xff", None])
async def test_a_selfie_that_is_not_a_jpeg_is_refused_unsent(
    sandbox: SandboxServer, jpeg: Any
) -> None:
    error = await _refused(sandbox, lambda c: c.upload_selfie(SIG, jpeg))
    assert error.field == "jpeg"


async def test_an_empty_client_reference_is_refused_unsent(sandbox: SandboxServer) -> None:
    error = await _refused(sandbox, lambda c: c.create_workflow(""))
    assert error.field == "client_reference"


async def test_a_download_into_a_missing_folder_is_refused_unsent(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    error = await _refused(
        sandbox, lambda c: c.download_signed_document(SIG, "doc-1", tmp_path / "missing")
    )
    assert error.field == "destination"


@pytest.mark.parametrize("document_id", ["", "../../etc", "a/b"])
async def test_a_path_like_document_id_is_refused_unsent(
    sandbox: SandboxServer, tmp_path: Path, document_id: str
) -> None:
    error = await _refused(
        sandbox, lambda c: c.download_signed_document(SIG, document_id, tmp_path)
    )
    assert error.field == "document_id"


def test_empty_credentials_are_refused() -> None:
    with pytest.raises(InvalidInputError) as info:
        QESClient("id", "", base_url="http://127.0.0.1:9")
    assert info.value.field == "client_secret"
