"""The human in the flow: consent, passcode and selfie, behind one small protocol.

A :class:`SignatureFlow` asks its :class:`Signer` three kinds of question and tells it how
each answer turned out (:meth:`Signer.acknowledge`).  Three implementations ship:

* :class:`CallbackSigner` for scripts: plain functions (sync or async) answer;
* :class:`SignerInbox` for web apps: the flow's question waits in the inbox until another
  HTTP request submits the answer, and that request gets an immediate typed
  :class:`SignerAnswer` (accepted, wrong passcode with attempts left, expired, ...);
* :class:`TerminalSigner` for the CLI: prompts on a terminal, reading stdin off the loop.

Requests never carry the full mobile number, and answers never carry the passcode.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Protocol, TypeVar, runtime_checkable

import attrs

from .._core.errors import FlowError
from .._core.models import DocumentInfo, LegalCondition, PasscodeInfo
from .._core.redact import Secret, hold
from .._runtime.clock import Clock, SystemClock
from .._runtime.logs import logger as log

__all__ = [
    "AnswerKind",
    "CallbackSigner",
    "ConsentRequest",
    "PasscodeRequest",
    "SelfieRequest",
    "Signer",
    "SignerAnswer",
    "SignerInbox",
    "SignerRequest",
    "TerminalSigner",
]

T = TypeVar("T")


@attrs.frozen
class ConsentRequest:
    """Show these documents and legal conditions; approve or decline before ``deadline``.

    ``deadline`` is absolute POSIX seconds; ``masked_mobile_number`` is where the passcode
    will go (masked).
    """

    flow_id: str
    signature_id: str
    generation: int
    documents: tuple[DocumentInfo, ...]
    legal_conditions: tuple[LegalCondition, ...]
    deadline: float
    masked_mobile_number: str = ""
    passcode: PasscodeInfo | None = None


@attrs.frozen
class PasscodeRequest:
    """Enter the passcode sent by SMS before ``deadline``.

    ``attempts_left`` is set after a wrong passcode (``retry`` is then true).
    """

    flow_id: str
    signature_id: str
    generation: int
    deadline: float
    masked_mobile_number: str = ""
    length: int | None = None
    attempts_left: int | None = None
    retry: bool = False


@attrs.frozen
class SelfieRequest:
    """Take a selfie (JPEG bytes) before ``deadline``: the identity case is old or the device
    differs."""

    flow_id: str
    signature_id: str
    generation: int
    deadline: float


SignerRequest = ConsentRequest | PasscodeRequest | SelfieRequest


class AnswerKind(str, enum.Enum):
    """How a signer's answer turned out."""

    ACCEPTED = "accepted"  # taken (a consent or decline recorded, a passcode confirmed)
    WRONG_PASSCODE = "wrong_passcode"  # see attempts_left; the flow asks again
    EXPIRED = "expired"  # the deadline passed; the flow starts over or has ended
    NO_SUCH_FLOW = "no_such_flow"  # no flow with this id is waiting for the signer
    NOT_ASKED = "not_asked"  # the flow is waiting for another kind of answer
    PENDING = "pending"  # taken, but the flow did not say in time how it turned out
    # Kept: the flow exists but is moving to another worker (its driver stopped); the next
    # driver uses the answer when it asks again. Show "one moment", then read what the
    # flow waits for after ``retry_after`` seconds.
    MOVING = "moving"


@attrs.frozen
class SignerAnswer:
    """The typed answer to a submission (and what a flow tells its signer).

    Attributes:
        kind: how it turned out (:class:`AnswerKind`).
        attempts_left: passcode tries left, after a wrong passcode.
        retry_after: with ``MOVING``, seconds after which the page should look again at
            what the flow waits for (its next driver has asked by then in the usual case).
    """

    kind: AnswerKind
    attempts_left: int | None = None
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        """True when the answer was taken and worked."""
        return self.kind is AnswerKind.ACCEPTED

    @property
    def message(self) -> str:
        """A sentence for the signer."""
        if self.kind is AnswerKind.WRONG_PASSCODE:
            left = "" if self.attempts_left is None else f" {self.attempts_left} attempts left."
            return "Wrong passcode." + left
        return _MESSAGES[self.kind]


_MESSAGES = {
    AnswerKind.ACCEPTED: "Accepted.",
    AnswerKind.EXPIRED: "Too late: this step expired.",
    AnswerKind.NO_SUCH_FLOW: "No signature is waiting for this.",
    AnswerKind.NOT_ASKED: "This signature is waiting for something else.",
    AnswerKind.PENDING: "Received; the outcome is not known yet.",
    AnswerKind.MOVING: "One moment: your answer is kept and used as soon as possible.",
}


@runtime_checkable
class Signer(Protocol):
    """Answers a flow's questions to the human signer.

    Each question may take as long as a human does; the flow cancels it when its deadline
    passes.  After each answer is used the flow calls :meth:`acknowledge` with the outcome.
    """

    async def consent(self, request: ConsentRequest) -> bool:
        """True to approve the documents and legal conditions, False to decline."""
        ...

    async def passcode(self, request: PasscodeRequest) -> str | Secret:
        """The one-time passcode the signer received by SMS (a plain string, or held in a
        ``Secret`` so that it shows as ``Secret('***')``)."""
        ...

    async def selfie(self, request: SelfieRequest) -> bytes:
        """A JPEG selfie of the signer."""
        ...

    async def acknowledge(self, request: SignerRequest, answer: SignerAnswer) -> None:
        """How the answer to ``request`` turned out (wrong passcode, expired, accepted)."""
        ...


async def _call(func: Callable[[T], object], request: T) -> object:
    result = func(request)
    if inspect.isawaitable(result):
        return await result
    return result


class CallbackSigner:
    """A signer made of functions, for scripts and tests.

    Args:
        consent: ``request -> bool`` (sync or async).
        passcode: ``request -> str`` (sync or async; it may return a ``Secret``).
        selfie: ``request -> bytes`` (sync or async); without it a selfie request fails.
        on_answer: ``(request, answer) -> None`` (sync or async), told how answers went.
    """

    def __init__(
        self,
        consent: Callable[[ConsentRequest], bool | Awaitable[bool]],
        passcode: Callable[[PasscodeRequest], str | Secret | Awaitable[str | Secret]],
        selfie: Callable[[SelfieRequest], bytes | Awaitable[bytes]] | None = None,
        on_answer: Callable[[SignerRequest, SignerAnswer], object] | None = None,
    ) -> None:
        self._consent = consent
        self._passcode = passcode
        self._selfie = selfie
        self._on_answer = on_answer

    async def consent(self, request: ConsentRequest) -> bool:
        return bool(await _call(self._consent, request))

    async def passcode(self, request: PasscodeRequest) -> str | Secret:
        return _kept(await _call(self._passcode, request))

    async def selfie(self, request: SelfieRequest) -> bytes:
        if self._selfie is None:
            raise FlowError(
                "the service asks for a selfie but this CallbackSigner has no selfie callback",
                advice="Pass selfie=... to CallbackSigner.",
            )
        data = await _call(self._selfie, request)
        if not isinstance(data, bytes):
            raise TypeError("the selfie callback must return JPEG bytes")
        return data

    async def acknowledge(self, request: SignerRequest, answer: SignerAnswer) -> None:
        if self._on_answer is not None:
            result = self._on_answer(request, answer)
            if inspect.isawaitable(result):
                await result

    def __repr__(self) -> str:
        return "CallbackSigner()"


@attrs.define(eq=False)
class _Slot:
    request: SignerRequest
    # A finished future's repr shows its result: the submitted passcode or selfie.
    value: asyncio.Future[object] = attrs.field(repr=False)
    ack: asyncio.Future[SignerAnswer]


class SignerInbox:
    """A signer for web apps: flows ask, other requests answer by flow id.

    One inbox serves any number of flows.  A request handler calls :meth:`pending` to show
    what a flow waits for, then :meth:`submit_consent`, :meth:`submit_passcode` or
    :meth:`submit_selfie`, which return a :class:`SignerAnswer` as soon as the flow has used
    the answer (for a passcode: once the service accepted or refused it).

    Args:
        clock: the clock deadlines are read from (share the flow's).
        answer_timeout: seconds a submission waits for the flow's verdict before answering
            ``PENDING``.
        memory: how many expired flow ids are remembered to answer ``EXPIRED``.
    """

    def __init__(
        self, *, clock: Clock | None = None, answer_timeout: float = 30.0, memory: int = 10_000
    ) -> None:
        self._clock = clock or SystemClock()
        self._answer_timeout = answer_timeout
        self._memory = memory
        self._asks: dict[str, _Slot] = {}
        self._answered: dict[str, _Slot] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()
        self._asking_again: dict[str, asyncio.Future[None]] = {}
        self._listeners: list[Callable[[str, SignerRequest | None], None]] = []

    def add_listener(self, listener: Callable[[str, SignerRequest | None], None]) -> None:
        """Call ``listener(flow_id, request)`` whenever what a flow waits for changes:
        the request when the flow asks, None once it is answered, expired or cancelled.

        Listeners run synchronously and must not block; an exception in one is logged and
        does not reach the flow. The many-workers relay uses this to show a flow's
        question on every worker.
        """
        self._listeners.append(listener)

    def _changed(self, flow_id: str) -> None:
        request = self.pending(flow_id)
        for listener in self._listeners:
            try:
                listener(flow_id, request)
            except Exception:
                log.exception("a signer inbox listener failed")

    # --------------------------------------------------------------------- web-app side

    def pending(self, flow_id: str) -> SignerRequest | None:
        """What the flow ``flow_id`` is waiting for from its signer, or None."""
        slot = self._asks.get(flow_id)
        return slot.request if slot is not None else None

    async def submit_consent(self, flow_id: str, approve: bool) -> SignerAnswer:
        """Approve (or decline) the documents the flow ``flow_id`` showed."""
        return await self._submit(flow_id, ConsentRequest, approve)

    async def submit_passcode(self, flow_id: str, passcode: str | Secret) -> SignerAnswer:
        """Give the SMS passcode; the answer says whether the service accepted it."""
        # Held masked from the first line: the slot, its future and every frame on the way
        # to the flow show Secret('***') (frame locals reach error trackers).
        code = hold(passcode)
        del passcode
        return await self._submit(flow_id, PasscodeRequest, code)

    async def submit_selfie(self, flow_id: str, jpeg: bytes) -> SignerAnswer:
        """Give the selfie the flow ``flow_id`` asked for."""
        return await self._submit(flow_id, SelfieRequest, jpeg)

    async def _submit(self, flow_id: str, kind: type, value: object) -> SignerAnswer:
        slot = await self._slot_for(flow_id)
        if slot is None:
            expired = flow_id in self._expired
            return SignerAnswer(AnswerKind.EXPIRED if expired else AnswerKind.NO_SUCH_FLOW)
        if not isinstance(slot.request, kind):
            return SignerAnswer(AnswerKind.NOT_ASKED)
        if self._clock.time() >= slot.request.deadline:
            return SignerAnswer(AnswerKind.EXPIRED)
        if slot.value.done():
            return SignerAnswer(AnswerKind.NOT_ASKED)
        slot.value.set_result(value)
        del self._asks[flow_id]
        self._answered[flow_id] = slot
        self._changed(flow_id)
        try:
            return await asyncio.wait_for(asyncio.shield(slot.ack), self._answer_timeout)
        except asyncio.TimeoutError:
            return SignerAnswer(AnswerKind.PENDING)
        finally:
            # Nobody waits for a later verdict: do not keep the answer (a passcode) here.
            if self._answered.get(flow_id) is slot:
                del self._answered[flow_id]

    async def _slot_for(self, flow_id: str) -> _Slot | None:
        # Right after a wrong passcode the flow asks again; let the next try wait for it.
        again = self._asking_again.get(flow_id)
        if flow_id not in self._asks and again is not None:
            try:
                await asyncio.wait_for(asyncio.shield(again), self._answer_timeout)
            except asyncio.TimeoutError:
                self._asking_again.pop(flow_id, None)
        return self._asks.get(flow_id)

    # ------------------------------------------------------------------------ flow side

    async def consent(self, request: ConsentRequest) -> bool:
        return bool(await self._ask(request))

    async def passcode(self, request: PasscodeRequest) -> str:
        return _text(await self._ask(request))

    async def selfie(self, request: SelfieRequest) -> bytes:
        value = await self._ask(request)
        if not isinstance(value, bytes):
            raise TypeError("a selfie must be JPEG bytes")
        return value

    async def acknowledge(self, request: SignerRequest, answer: SignerAnswer) -> None:
        flow_id = request.flow_id
        if answer.kind is AnswerKind.EXPIRED:
            self._remember_expired(flow_id)
        if answer.kind is AnswerKind.WRONG_PASSCODE:
            loop = asyncio.get_running_loop()
            self._asking_again.setdefault(flow_id, loop.create_future())
        slot = self._answered.pop(flow_id, None)
        if slot is not None and slot.request == request and not slot.ack.done():
            slot.ack.set_result(answer)

    def _forget(self, flow_id: str) -> None:
        """The flow's run ended: drop its "asking again" marker left by a wrong passcode
        (a later run asks afresh). Expired ids stay: they answer ``EXPIRED``."""
        again = self._asking_again.pop(flow_id, None)
        if again is not None and not again.done():
            again.set_result(None)  # a submission waiting for the next ask stops waiting

    async def _ask(self, request: SignerRequest) -> object:
        loop = asyncio.get_running_loop()
        slot = _Slot(request, loop.create_future(), loop.create_future())
        self._asks[request.flow_id] = slot
        self._changed(request.flow_id)
        again = self._asking_again.pop(request.flow_id, None)
        if again is not None and not again.done():
            again.set_result(None)
        try:
            return await slot.value
        finally:
            if self._asks.get(request.flow_id) is slot:
                del self._asks[request.flow_id]
                if self._clock.time() >= request.deadline:
                    self._remember_expired(request.flow_id)
                self._changed(request.flow_id)

    def _remember_expired(self, flow_id: str) -> None:
        self._expired[flow_id] = None
        self._expired.move_to_end(flow_id)
        while len(self._expired) > self._memory:
            self._expired.popitem(last=False)

    def __repr__(self) -> str:
        return f"SignerInbox(waiting={len(self._asks)})"


class TerminalSigner:
    """Prompts on a terminal, for the CLI.

    Args:
        input: reads one line after printing a prompt. By default standard input is read
            from the event loop itself (no thread), so Ctrl+C ends a waiting prompt at once.
        read_secret: reads a passcode without echo (by default as ``input``, with echo
            off and always restored).
        output: where prompts and answers are written (default: standard error, so that
            standard output stays machine-readable).

    A blocking ``input`` or ``read_secret`` of your own runs in a worker thread.
    """

    def __init__(
        self,
        *,
        input: Callable[[str], str] | None = None,
        read_secret: Callable[[str], str] | None = None,
        output: IO[str] | None = None,
    ) -> None:
        from .prompt import LineReader

        self._input = input
        self._read_secret = read_secret
        self._output = output
        self._reader = LineReader(prompts=output)

    def _write(self, text: str) -> None:
        out = self._output or sys.stderr
        out.write(text + "\n")
        out.flush()

    async def _ask(self, prompt: str) -> str:
        if self._input is not None:
            return await asyncio.to_thread(self._input, prompt)
        return await self._reader.read(prompt)

    async def _ask_secret(self, prompt: str) -> str:
        if self._read_secret is not None:
            return await asyncio.to_thread(self._read_secret, prompt)
        return await self._reader.read(prompt, echo=False)

    async def consent(self, request: ConsentRequest) -> bool:
        self._write(f"Documents to sign (signature {request.signature_id}):")
        for doc in request.documents:
            self._write(f"  - {doc.display_name or doc.file_name} ({doc.file_name})")
        for cond in request.legal_conditions:
            where = f" {cond.url}" if cond.url else ""
            self._write(f"  * accept: {cond.title or cond.id} v{cond.version}{where}")
        while True:
            answer = (await self._ask("Approve and sign? [yes/no] ")).strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self._write("Please answer yes or no.")

    async def passcode(self, request: PasscodeRequest) -> str:
        where = f" sent to {request.masked_mobile_number}" if request.masked_mobile_number else ""
        return (await self._ask_secret(f"Passcode{where}: ")).strip()

    async def selfie(self, request: SelfieRequest) -> bytes:
        line = await self._ask("Path to a JPEG selfie: ")
        return await asyncio.to_thread(_read_file, line.strip())

    async def acknowledge(self, request: SignerRequest, answer: SignerAnswer) -> None:
        self._write(answer.message)

    def __repr__(self) -> str:
        return "TerminalSigner()"


def _kept(value: object) -> str | Secret:
    """A passcode as a signer gave it: a Secret stays one, anything else is its text."""
    return value if isinstance(value, Secret) else str(value)


def _text(value: object) -> str:
    """A submitted passcode's text (submissions hold it in a Secret)."""
    return value.reveal() if isinstance(value, Secret) else str(value)


def _read_file(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()
