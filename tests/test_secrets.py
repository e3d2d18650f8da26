"""Secrets stay secret and files stay where they belong.

Temp files of a download are 0600 while they are written (and the final file too); a
server-chosen name, or a symlink planted in the destination, never puts bytes outside it;
``repr`` and error messages of the client and its errors never show a secret.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from aiohttp import web
from conftest import CLIENT_SECRET, FakeAPI, register_secret

from qes_async import (
    AuthenticationError,
    Document,
    FakeClock,
    InvalidPasscodeError,
    QESClient,
    SignatureFlow,
    make_pdf,
)
from qes_async.sandbox import SandboxServer

SIG = "sig-1"
DOC_PATH = "/v1/signatures/{id}/documents/{doc}"
MOBILE = "+31698765432"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_temp_file_of_a_download_is_0600_while_written(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    pdf = make_pdf(padding=200_000)
    half_sent, go_on = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        response.content_length = len(pdf)
        await response.prepare(request)
        await response.write(pdf[:100_000])
        half_sent.set()
        await go_on.wait()
        await response.write(pdf[100_000:])
        return response

    fake_api.add("GET", DOC_PATH, slow)
    async with fake_api.client() as client:
        download = asyncio.create_task(client.download_signed_document(SIG, "d-1", tmp_path))
        await asyncio.wait_for(half_sent.wait(), 10)
        for _ in range(200):  # the client writes the first chunk off the loop
            parts = list(tmp_path.glob(".qes-*.part"))
            if parts and parts[0].stat().st_size > 0:
                break
            await asyncio.sleep(0.01)
        assert len(parts) == 1
        assert _mode(parts[0]) == 0o600
        go_on.set()
        signed = await asyncio.wait_for(download, 10)
    assert [p.name for p in tmp_path.iterdir()] == ["d-1.pdf"]
    assert _mode(signed.path) == 0o600


async def test_a_symlink_in_the_destination_is_never_followed(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    target = outside / "victim.txt"
    target.write_bytes(b"untouched")
    (dest / "contract.pdf").symlink_to(target)
    pdf = make_pdf("signed")
    fake_api.add(
        "GET",
        DOC_PATH,
        lambda r: web.Response(
            body=pdf,
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": 'attachment; filename="contract.pdf"',
            },
        ),
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", dest)
    # The name is taken (by the link), so the download takes its own name beside it.
    assert signed.path == dest / "contract-d-1.pdf"
    assert not signed.path.is_symlink()
    assert signed.path.read_bytes() == pdf
    assert target.read_bytes() == b"untouched"
    assert [p.name for p in outside.iterdir()] == ["victim.txt"]


@pytest.mark.parametrize(
    "name", ["../../escape.pdf", "/tmp/abs.pdf", "..\\..\\win.pdf", "sub/dir/x.pdf"]
)
async def test_a_server_file_name_never_leaves_the_destination(
    fake_api: FakeAPI, tmp_path: Path, name: str
) -> None:
    dest = tmp_path / "a" / "dest"
    dest.mkdir(parents=True)
    fake_api.add(
        "GET",
        DOC_PATH,
        lambda r: web.Response(
            body=make_pdf(),
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        ),
    )
    async with fake_api.client() as client:
        signed = await client.download_signed_document(SIG, "d-1", dest)
    assert signed.path.parent == dest
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [signed.path]


async def test_a_refused_secret_is_never_in_the_error_or_the_client_repr(
    fake_api: FakeAPI,
) -> None:
    wrong = "wrong-secret-value-123"
    register_secret(wrong)
    async with fake_api.client() as good:
        assert CLIENT_SECRET not in repr(good)
    async with QESClient(
        "cid",
        wrong,
        base_url=str(fake_api.server.make_url("")).rstrip("/"),  # type: ignore[attr-defined]
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_signature_status(SIG)
        assert wrong not in repr(client)
    for text in (str(info.value), repr(info.value), repr(info.value.__dict__)):
        assert wrong not in text


async def test_a_wrong_passcode_and_the_mobile_number_never_show_in_errors_or_reprs(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with SandboxServer(clock=clock, seed=5) as sandbox:
        register_secret(sandbox.client_secret, MOBILE)
        sandbox.add_client("c-1")
        async with QESClient(
            sandbox.client_id, sandbox.client_secret, base_url=sandbox.url, clock=clock
        ) as client:
            sig = (await client.create_workflow("c-1")).workflow_id
            await clock.sleep(1)
            await client.upload_documents(sig, [Document.from_bytes("a.pdf", make_pdf())])
            await client.upload_mobile_number(sig, MOBILE)
            details = await client.get_signature_details(sig)
            await client.approve_documents(sig, details)
            right = sandbox.latest_passcode(sig)
            wrong = "".join("1" if c != "1" else "2" for c in right)
            register_secret(right, wrong)
            with pytest.raises(InvalidPasscodeError) as info:
                await client.confirm_signature(sig, wrong)
            flow = SignatureFlow(
                client,
                mobile_number=MOBILE,
                client_reference="c-1",
                signer=_NoSigner(),
                download_dir=tmp_path,
            )
            texts = [str(info.value), repr(info.value), repr(flow), repr(details)]
            texts += [repr(record) for record in sandbox.sms_outbox]
    for text in texts:
        for secret in (sandbox.client_secret, MOBILE, right, wrong):
            assert secret not in text


class _NoSigner:
    async def consent(self, request: object) -> bool:
        raise AssertionError("not used")
