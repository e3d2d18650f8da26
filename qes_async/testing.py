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

Since every pytest run of a project that installs the package loads this module, it
imports nothing heavy until a fixture is used (the sandbox and the client load then),
and without pytest-asyncio it still loads: the async fixtures then fail, saying what to
install, and the rest of the run is untouched.

Fixtures:
    qes_clock: a :class:`~qes_async.FakeClock` shared by the sandbox and the client.
    qes_sandbox: a running :class:`~qes_async.sandbox.SandboxServer` on that clock.
    qes_client: a :class:`~qes_async.QESClient` connected to the sandbox.
    qes_signer: a :class:`~qes_async.CallbackSigner` that consents and types the
        passcode the sandbox sent.

In memory, with no server at all: :class:`MockTransport` (``QESClient(...,
transport=MockTransport())``) answers what you script with :class:`MockResponse` and keeps
every request it got (:class:`RecordedRequest`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from ._client.mock_transport import MockResponse, MockTransport, RecordedRequest
from ._runtime.clock import FakeClock

if TYPE_CHECKING:
    from ._client.client import QESClient
    from ._signers.signer import CallbackSigner
    from .sandbox import SandboxServer

try:
    import pytest_asyncio

    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # the package does not require it; only these fixtures do
    HAVE_PYTEST_ASYNCIO = False

__all__ = [
    "MockResponse",
    "MockTransport",
    "RecordedRequest",
    "qes_client",
    "qes_clock",
    "qes_sandbox",
    "qes_signer",
    "sandbox_signer",
]

NEEDS_PYTEST_ASYNCIO = (
    "the qes_async fixtures qes_sandbox and qes_client need pytest-asyncio: "
    "pip install pytest-asyncio, and mark async tests with @pytest.mark.asyncio"
)


def _async_fixture(function: Any) -> Any:
    """``pytest_asyncio.fixture``; without pytest-asyncio, a fixture that says so."""
    if HAVE_PYTEST_ASYNCIO:
        return pytest_asyncio.fixture(function)

    def missing(*_args: object, **_kwargs: object) -> None:
        pytest.fail(NEEDS_PYTEST_ASYNCIO, pytrace=False)

    missing.__name__ = function.__name__
    missing.__doc__ = function.__doc__
    return pytest.fixture(name=function.__name__)(missing)


@pytest.fixture
def qes_clock() -> FakeClock:
    """A fake clock: hour-long deadlines pass in milliseconds."""
    return FakeClock()


@_async_fixture
async def qes_sandbox(qes_clock: FakeClock) -> AsyncIterator[SandboxServer]:
    """A sandbox server on loopback, on the fake clock."""
    from .sandbox import SandboxServer

    async with SandboxServer(clock=qes_clock) as sandbox:
        yield sandbox


@_async_fixture
async def qes_client(qes_sandbox: SandboxServer, qes_clock: FakeClock) -> AsyncIterator[QESClient]:
    """A client of the sandbox, sharing its clock."""
    from ._client.client import QESClient

    async with QESClient(
        qes_sandbox.client_id, qes_sandbox.client_secret, base_url=qes_sandbox.url, clock=qes_clock
    ) as client:
        yield client


def sandbox_signer(sandbox: SandboxServer, *, consent: bool = True) -> CallbackSigner:
    """A signer that answers ``consent`` and types the passcode the sandbox sent by SMS."""
    from ._signers.signer import CallbackSigner, PasscodeRequest

    def passcode(request: PasscodeRequest) -> str:
        return sandbox.latest_passcode(request.signature_id)

    return CallbackSigner(lambda _request: consent, passcode)


@pytest.fixture
def qes_signer(qes_sandbox: SandboxServer) -> CallbackSigner:
    """A signer that consents and types the sandbox's passcode."""
    return sandbox_signer(qes_sandbox)
