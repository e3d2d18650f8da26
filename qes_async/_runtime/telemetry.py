"""The one switch between the SDK and its telemetry: :data:`hook`, None while it is off.

Nothing here imports OpenTelemetry. :func:`qes_async.otel.instrument` sets :data:`hook` to
the recorder of :mod:`qes_async._runtime.otel`; until then every instrumented place pays one
``is None`` test (the transport reads :data:`hook` once per call, the flow once per run,
the receiver once per answer) and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._client.protocol import Request, Response
    from .._flow.driver import SignatureFlow
    from .._flow.events import FlowEvent

__all__ = ["OFF", "FlowTrace", "Hooks", "Scope", "hook"]


class Scope(Protocol):
    """An open step or wait span; ``outcome`` says how a wait ended (the status reached,
    ``answered``...)."""

    def __enter__(self) -> Scope: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def outcome(self, value: str) -> None: ...


class FlowTrace(Protocol):
    """The telemetry of one flow run (``SignatureFlow._trace`` while it runs)."""

    def step(self, name: str) -> Scope: ...

    def wait(self, what: str, targets: Collection[object] = ()) -> Scope: ...

    def event(self, event: FlowEvent) -> None: ...

    def failed(self, error: BaseException) -> None: ...

    def finish(self) -> None: ...


class Hooks(Protocol):
    """What the instrumented places call; see :mod:`qes_async._runtime.otel`."""

    async def attempt(
        self,
        transport: Any,
        request: Request,
        number: int,
        call: Awaitable[tuple[Response, Any]],
    ) -> tuple[Response, Any]: ...

    async def decide(self, retrying: Awaitable[bool], retries: Any) -> bool: ...

    def flow_started(self, flow: SignatureFlow) -> FlowTrace: ...

    def webhook(self, status: int, reason: str) -> None: ...


class _Off:
    """The context of a step or wait while telemetry is off: does nothing."""

    __slots__ = ()

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def outcome(self, value: str) -> None:
        return None


OFF: Scope = _Off()

#: The recorder, or None (the default): set only by ``qes_async.otel.instrument()``.
hook: Hooks | None = None
