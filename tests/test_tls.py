"""TLS verification is on by default: a self-signed loopback server is refused with a typed
error until the user hands its CA to the client as an ``ssl.SSLContext``."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import register_secret
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qes_async import QESClient, RequestNotSentError, RetryPolicy, Status

SECRET = "tls-client-secret-XYZ"
TOKEN = "tls-access-token-0001"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def _token(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("client_secret") != SECRET:
        return web.json_response({"code": "invalid_client"}, status=401)
    return web.json_response({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60})


async def _status(request: web.Request) -> web.Response:
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    sid = request.match_info["id"]
    return web.json_response({"signatureId": sid, "status": "pending", "statusCode": None})


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[str]]]:
    """A loopback HTTPS server with a private CA: (url, ca file, paths served)."""
    register_secret(SECRET, TOKEN)
    ca, cert, key = _make_pki(tmp_path)
    served: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        served.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_post("/v1/oauth2/token", _token)
    app.router.add_get("/v1/signatures/{id}/status", _status)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", ca, served
    finally:
        await runner.cleanup()


async def test_a_self_signed_server_is_refused_by_default(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, _, served = https_server
    async with QESClient("cid", SECRET, base_url=url, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(RequestNotSentError) as info:
            await client.get_signature_status("sig-1")
    assert info.value.operation == "create_token"
    assert "ClientConnectorCertificateError" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    assert served == []  # the handshake failed: no request reached the server


async def test_the_server_is_accepted_with_its_ca_in_an_ssl_context(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, ca, served = https_server
    context = ssl.create_default_context(cafile=str(ca))
    async with QESClient("cid", SECRET, base_url=url, ssl=context) as client:
        report = await client.get_signature_status("sig-1")
    assert report.status == Status.PENDING
    assert served == ["/v1/oauth2/token", "/v1/signatures/sig-1/status"]


async def test_an_ssl_context_with_another_ca_is_still_refused(
    https_server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    url, _, served = https_server
    (tmp_path / "other").mkdir()
    other_ca, _, _ = _make_pki(tmp_path / "other")
    context = ssl.create_default_context(cafile=str(other_ca))
    async with QESClient(
        "cid", SECRET, base_url=url, ssl=context, retry=RetryPolicy(attempts=1)
    ) as client:
        with pytest.raises(RequestNotSentError):
            await client.get_signature_status("sig-1")
    assert served == []
