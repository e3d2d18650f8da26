"""Fault injection: rates with a seed, or scripted sequences, per route or global.

A :class:`FaultPlan` answers one question, "which fault, if any, hits this call?", and is
pure and deterministic for a given seed and call sequence. The HTTP layer and the webhook
dispatcher each own one plan and apply what it picks.

HTTP fault kinds:

``server_error``   answer ``status`` (default 503) with the error body; nothing is processed
``rate_limit``     answer 429 with ``Retry-After: retry_after``; nothing is processed
``drop_before``    close the connection without processing the call
``drop_after``     process the call, then close the connection: the answer is lost
``slow``           wait ``delay`` real seconds before processing and answering
``slow_answer``    process the call, then wait ``delay`` real seconds before answering (a
                   client that gives up first has lost the answer of a processed call)
``revoke_token``   revoke the presented token, so the call is refused with 401
``unreadable_pdf`` (downloads only) send a signed document that starts with ``%PDF-`` and
                   ends with ``%%EOF`` but that no PDF reader can parse
``hostile_name``   (downloads only) name the file in the answer with a hostile name: over
                   255 bytes, a path that climbs out (``../../``), control and bidi
                   characters, or one that reduces to another document's name

A request with the header ``X-Sandbox-Faults: off`` is never faulted (a test's side door:
calls it plants beside a faulted run must reach the service as sent).

Webhook fault kinds: ``drop`` (never sent), ``duplicate`` (sent twice), ``delay`` (sent
``delay`` seconds of the sandbox clock later), ``reorder`` (held back and sent after the
next webhook).
"""

from __future__ import annotations

import random
from collections import deque

import attrs

__all__ = ["DOWNLOAD_FAULTS", "HTTP_FAULTS", "WEBHOOK_FAULTS", "Fault", "FaultPlan"]

HTTP_FAULTS = (
    "server_error",
    "rate_limit",
    "drop_before",
    "drop_after",
    "slow",
    "slow_answer",
    "revoke_token",
    "unreadable_pdf",
    "hostile_name",
)
#: Fault kinds that change what a download sends; on other routes they do nothing.
DOWNLOAD_FAULTS = ("unreadable_pdf", "hostile_name")
WEBHOOK_FAULTS = ("drop", "duplicate", "delay", "reorder")
OK = ("ok", "none", None)


@attrs.frozen
class Fault:
    """One fault to apply.

    Attributes:
        kind: one of :data:`HTTP_FAULTS` or :data:`WEBHOOK_FAULTS`.
        status: the status code of a ``server_error``.
        retry_after: the ``Retry-After`` seconds of a ``rate_limit``.
        delay: seconds of a ``slow`` answer (real time) or a ``delay``-ed webhook (clock).
    """

    kind: str
    status: int = 503
    retry_after: int = 1
    delay: float = 0.2


@attrs.define
class _Rule:
    fault: Fault
    route: str | None
    rate: float
    remaining: int | None


class FaultPlan:
    """Decides which fault hits each call.

    Args:
        kinds: the fault kinds this plan accepts.
        seed: seeds the random draws of rate rules.

    Scripted sequences win over rate rules; a route's own script or rules win over the
    global ones (``route=None``).
    """

    def __init__(self, kinds: tuple[str, ...], seed: int | None = None) -> None:
        self.kinds = kinds
        self._rng = random.Random(seed)
        self._rules: list[_Rule] = []
        self._scripts: dict[str | None, deque[Fault | None]] = {}

    def _check(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(self.kinds)}")

    def add(
        self,
        kind: str,
        *,
        route: str | None = None,
        rate: float = 1.0,
        times: int | None = None,
        status: int = 503,
        retry_after: int = 1,
        delay: float = 0.2,
    ) -> None:
        """Hit calls (of ``route``, or all) with probability ``rate``, at most ``times``."""
        self._check(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if kind == "server_error" and not 500 <= status <= 599:
            raise ValueError("a server_error status must be 5xx")
        fault = Fault(kind, status, retry_after, delay)
        self._rules.append(_Rule(fault, route, rate, times))

    def script(self, steps: list[str | Fault | None], *, route: str | None = None) -> None:
        """Hit the next calls in order: each step a kind, a :class:`Fault`, or ``"ok"``."""
        queue = self._scripts.setdefault(route, deque())
        for step in steps:
            if step in OK:
                queue.append(None)
            elif isinstance(step, Fault):
                self._check(step.kind)
                queue.append(step)
            else:
                assert isinstance(step, str)
                self._check(step)
                queue.append(Fault(step))

    def clear(self) -> None:
        """Remove every rule and script."""
        self._rules.clear()
        self._scripts.clear()

    def pick(self, route: str | None) -> Fault | None:
        """The fault for this call, if any (consumes script steps and random draws)."""
        for key in (route, None):
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
        for rule in sorted(self._rules, key=lambda r: r.route is None):
            if rule.route not in (None, route) or rule.remaining == 0:
                continue
            if self._rng.random() < rule.rate:
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule.fault
        return None
