"""Threat model: the network between the client and the service.

The client secret, the tokens and the signer's data must never cross a connection an
attacker can read or impersonate. This module defends against:

- a self-signed or foreign certificate (refused with :class:`TLSError` until the caller
  hands the server's CA to the client as an ``ssl.SSLContext``);
- a certificate error retried as if it were transient (it is raised at once, and says how
  to trust a private CA);
- ``ssl=False`` (or any other non-context) turning verification off: refused with advice;
- a caller's session whose connector was made with ``ssl=False``: the client passes a
  verifying context with every request, so the connector cannot weaken it;
- an ``http://`` base URL for a host on the network, which would send the client secret in
  cleartext: refused unless the caller opts in with ``allow_insecure_http=True``;
  loopback hosts (the sandbox) are accepted.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import connector as aiohttp_connector
from aiohttp import web
from conftest import register_secret
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qes_async import (
    InvalidInputError,
    OutcomeUnknownError,
    QESClient,
    RequestNotSentError,
    RetryPolicy,
    Status,
    TLSError,
)
from qes_async._client import aiohttp_transport

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
        with pytest.raises(TLSError) as info:
            await client.get_signature_status("sig-1")
    assert isinstance(info.value, RequestNotSentError)  # nothing was sent
    assert info.value.operation == "create_token"
    assert "ClientConnectorCertificateError" in str(info.value)
    assert "cafile" in str(info.value)  # says how to trust a private CA
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


async def test_a_certificate_error_is_not_retried(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, _, served = https_server
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    retry = RetryPolicy(attempts=5, jitter=None)
    async with QESClient("cid", SECRET, base_url=url, retry=retry, sleep=sleep) as client:
        with pytest.raises(TLSError):
            await client.get_signature_status("sig-1")
    assert waits == []  # the old code slept and tried 4 more handshakes
    assert served == []


async def test_a_session_whose_connector_turns_verification_off_is_still_verified(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, _, served = https_server
    connector = aiohttp.TCPConnector(ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = QESClient(
            "cid", SECRET, base_url=url, session=session, retry=RetryPolicy(attempts=1)
        )
        with pytest.raises(TLSError):
            await client.get_signature_status("sig-1")
    assert served == []  # the old code sent the client secret to the unverified server


async def test_a_session_with_its_ca_in_the_context_works_with_such_a_connector(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, ca, _ = https_server
    context = ssl.create_default_context(cafile=str(ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        client = QESClient("cid", SECRET, base_url=url, session=session, ssl=context)
        report = await client.get_signature_status("sig-1")
    assert report.status == Status.PENDING


@pytest.mark.parametrize("value", [False, True, "none", 0])
def test_ssl_that_is_not_a_context_is_refused_with_advice(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        QESClient("cid", SECRET, base_url="https://api.example.com", ssl=value)  # type: ignore[arg-type]
    assert info.value.field == "ssl"
    assert "create_default_context(cafile=" in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "http://10.0.0.5:8080", "http://[2001:db8::1]/"]
)
def test_cleartext_http_to_a_network_host_is_refused(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        QESClient("cid", SECRET, base_url=url)
    assert info.value.field == "base_url"
    assert "allow_insecure_http=True" in str(info.value)
    assert SECRET not in str(info.value)


def test_cleartext_http_to_a_network_host_is_accepted_with_the_opt_in() -> None:
    client = QESClient("cid", SECRET, base_url="http://api.example.com", allow_insecure_http=True)
    assert client.base_url == "http://api.example.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.5.6.7",
        "http://localhost:9000",
        "http://[::1]:8080",
        "https://api.example.com",
    ],
)
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    QESClient("cid", SECRET, base_url=url)


@pytest.mark.parametrize("url", ["ftp://api.example.com", "api.example.com", "https://"])
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(InvalidInputError, match="base_url"):
        QESClient("cid", SECRET, base_url=url)


async def test_http_to_a_tls_port_hints_at_https(
    https_server: tuple[str, Path, list[str]],
) -> None:
    url, _, _ = https_server
    plain = url.replace("https://", "http://")
    async with QESClient("cid", SECRET, base_url=plain, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises((RequestNotSentError, OutcomeUnknownError)) as info:
            await client.get_signature_status("sig-1")
    assert "https://" in str(info.value)
    assert plain.split("//", 1)[1] in str(info.value)  # names the host and port


async def test_a_dropped_connection_after_answers_gives_no_tls_hint(fake_api: Any) -> None:
    """Once the server has answered in HTTP, a drop is an ordinary failure: no https hint."""

    async def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    fake_api.add("GET", "/v1/signatures/{id}/status", drop)
    async with fake_api.client(retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.get_signature_status("sig-1")  # the token call answered first
    assert "https://" not in str(info.value)


# The default context: aiohttp's verified one, reused when it is as strict as
# ssl.create_default_context(), instead of loading the trust store a second time.


@pytest.fixture
def fresh_default_context() -> Iterator[None]:
    """``default_ssl_context`` made again by the test, and again after it."""
    aiohttp_transport.default_ssl_context.cache_clear()
    yield
    aiohttp_transport.default_ssl_context.cache_clear()


def _count_created(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """The contexts ``ssl.create_default_context`` makes from now on (still real ones)."""
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def create_default_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", create_default_context)
    return made


@pytest.mark.usefixtures("fresh_default_context")
def test_building_a_client_reuses_aiohttps_verified_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _count_created(monkeypatch)
    client = QESClient("cid", SECRET, base_url="https://qes.test")
    context = client._transport.transport.ssl_context  # type: ignore[attr-defined]
    assert made == []  # the old code loaded the trust store again, about 25 ms
    assert context is aiohttp_connector._SSL_CONTEXT_VERIFIED
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _no_hostname_check() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    return context


def _old_tls() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return context


@pytest.mark.usefixtures("fresh_default_context")
@pytest.mark.parametrize(
    "shared",
    [None, "missing", "not a context", _unverified, _no_hostname_check, _old_tls],
    ids=["none", "missing", "not-a-context", "unverified", "no-hostname-check", "old-tls"],
)
def test_a_missing_or_weak_aiohttp_context_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, shared: object
) -> None:
    if shared == "missing":
        monkeypatch.delattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED")
    else:
        weak = shared() if callable(shared) else shared
        monkeypatch.setattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED", weak)
    before = getattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED", None)
    snapshot = (
        (before.verify_mode, before.check_hostname, before.minimum_version)
        if isinstance(before, ssl.SSLContext)
        else None
    )
    made = _count_created(monkeypatch)
    client = QESClient("cid", SECRET, base_url="https://qes.test")
    context = client._transport.transport.ssl_context  # type: ignore[attr-defined]
    assert made == [context]  # a context of our own, from the system trust store
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    if isinstance(before, ssl.SSLContext):  # aiohttp's own is left as it was
        assert (before.verify_mode, before.check_hostname, before.minimum_version) == snapshot


@pytest.mark.usefixtures("fresh_default_context")
async def test_the_reused_context_verifies_certificates_and_hostnames(
    https_server: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca, served = https_server
    # aiohttp's context with the test CA in its trust store: the one the client must use.
    trusting = ssl.create_default_context(cafile=str(ca))
    monkeypatch.setattr(aiohttp_connector, "_SSL_CONTEXT_VERIFIED", trusting)
    async with QESClient("cid", SECRET, base_url=url) as client:
        report = await client.get_signature_status("sig-1")
    assert report.status == Status.PENDING  # the reused context is the one on the wire
    # The certificate names 127.0.0.1 only: the same server under another name is refused.
    other_name = url.replace("127.0.0.1", "localhost")
    retry = RetryPolicy(attempts=1)
    async with QESClient("cid", SECRET, base_url=other_name, retry=retry) as client:
        with pytest.raises(TLSError) as info:
            await client.get_signature_status("sig-2")
    assert isinstance(info.value, RequestNotSentError)
    assert "mismatch" in str(info.value), str(info.value)  # the name, not the CA
    assert served == ["/v1/oauth2/token", "/v1/signatures/sig-1/status"]
