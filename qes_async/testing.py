"""Pytest fixtures for testing your own app against the sandbox.

Installing the package registers them with pytest (a ``pytest11`` entry point named
``qes_async.testing``), so no ``conftest.py`` line is needed; ``-p no:qes_async.testing``
turns them off. They need pytest-asyncio and work in its default strict mode::

    import pytest

    @pytest.mark.asyncio
    async def test_my_signing_page(qes_sandbox, qes_client):
        workflow = await qes_client.create_workflow("client-42")
        ...

A ``pytest_plugins = ["qes_async.testing"]`` left in a conftest finds the plugin loaded
already and does nothing.

Fixtures:
    qes_clock: a :class:`~qes_async.FakeClock` shared by the sandbox and the client.
    qes_sandbox: a running :class:`~qes_async.sandbox.SandboxServer` on that clock.
    qes_client: a :class:`~qes_async.QESClient` connected to the sandbox.
    qes_signer: a :class:`~qes_async.CallbackSigner` that consents and types the
        passcode the sandbox sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ._client import QESClient
from ._clock import FakeClock
from ._signer import CallbackSigner, PasscodeRequest
from .sandbox import SandboxServer

__all__ = ["qes_client", "qes_clock", "qes_sandbox", "qes_signer", "sandbox_signer"]


@pytest.fixture
def qes_clock() -> FakeClock:
    """A fake clock: hour-long deadlines pass in milliseconds."""
    return FakeClock()


@pytest_asyncio.fixture
async def qes_sandbox(qes_clock: FakeClock) -> AsyncIterator[SandboxServer]:
    """A sandbox server on loopback, on the fake clock."""
    async with SandboxServer(clock=qes_clock) as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def qes_client(qes_sandbox: SandboxServer, qes_clock: FakeClock) -> AsyncIterator[QESClient]:
    """A client of the sandbox, sharing its clock."""
    async with QESClient(
        qes_sandbox.client_id, qes_sandbox.client_secret, base_url=qes_sandbox.url, clock=qes_clock
    ) as client:
        yield client


def sandbox_signer(sandbox: SandboxServer, *, consent: bool = True) -> CallbackSigner:
    """A signer that answers ``consent`` and types the passcode the sandbox sent by SMS."""

    def passcode(request: PasscodeRequest) -> str:
        return sandbox.latest_passcode(request.signature_id)

    return CallbackSigner(lambda _request: consent, passcode)


@pytest.fixture
def qes_signer(qes_sandbox: SandboxServer) -> CallbackSigner:
    """A signer that consents and types the sandbox's passcode."""
    return sandbox_signer(qes_sandbox)
