"""When to try again, and how long to wait: pure decisions plus ``backoff``'s wait generators.

The transport reports what happened to an attempt as a :class:`Failure` (or a status code)
and :func:`decide` answers with a :class:`Decision`. Nothing here does I/O or sleeps, so the
whole policy is a table test.

The one rule that matters most: a call that is not idempotent (create workflow, upload
documents, approve, confirm) is never sent twice once it may have reached the server.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

import attrs

# backoff loads with the first retry (it is needed only to wait), email.utils with the
# first Retry-After given as a date: not at import.

__all__ = ["Decision", "Failure", "RetryPolicy", "Verdict", "decide", "parse_retry_after"]


def _full_jitter(value: float) -> float:
    import backoff

    return backoff.full_jitter(value)


@attrs.frozen
class RetryPolicy:
    """How the client retries.

    Attributes:
        attempts: the most attempts per call, the first included (1 disables retries).
        max_time: no new attempt starts once this many seconds passed since the first.
        base: the first backoff wait in seconds; each next one doubles.
        cap: the longest backoff wait in seconds.
        jitter: turns a wait into the actual wait; full jitter (uniform in ``[0, wait]``)
            by default, None for exact waits.
        max_retry_after: the longest ``Retry-After`` (seconds) the client waits out;
            a longer one raises :class:`RateLimitedError` at once.
    """

    attempts: int = 4
    max_time: float = 60.0
    base: float = 0.5
    cap: float = 8.0
    jitter: Callable[[float], float] | None = _full_jitter
    max_retry_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(attempts=1)

    def waits(self) -> Iterator[float]:
        """Backoff waits between attempts: ``backoff.expo`` capped, then jittered."""
        import backoff

        gen = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        gen.send(None)  # prime: backoff's generators yield once before the first value
        for wait in gen:
            yield self.jitter(wait) if self.jitter is not None else wait


class Failure(enum.Enum):
    """What went wrong with an attempt that got no HTTP status."""

    NOT_SENT = "not_sent"  # connect refused, DNS, TLS, connect timeout: nothing left
    NO_ANSWER = "no_answer"  # read timeout, connection dropped after sending


class Verdict(enum.Enum):
    """What the transport does next."""

    DONE = "done"  # hand the answer to the protocol layer (success or typed error)
    RETRY = "retry"  # wait (backoff, or ``delay``) and try again
    REAUTH = "reauth"  # refresh the token and try once more
    NOT_SENT = "not_sent"  # give up: RequestNotSentError
    UNKNOWN = "unknown"  # give up: OutcomeUnknownError, never replay
    RAISE = "raise"  # give up: raise the service's typed error as is


@attrs.frozen
class Decision:
    """A verdict, with the wait a ``Retry-After`` asked for when there was one."""

    verdict: Verdict
    delay: float | None = None


def decide(
    *,
    idempotent: bool,
    attempt: int,
    policy: RetryPolicy,
    status: int | None = None,
    failure: Failure | None = None,
    retry_after: float | None = None,
    reauthed: bool = False,
) -> Decision:
    """Classify one attempt's outcome (``attempt`` counts from 1).

    Exactly one of ``status`` and ``failure`` is given.
    """
    more = attempt < policy.attempts
    if failure is Failure.NOT_SENT:
        return Decision(Verdict.RETRY if more else Verdict.NOT_SENT)
    if failure is Failure.NO_ANSWER:
        if not idempotent:
            return Decision(Verdict.UNKNOWN)
        return Decision(Verdict.RETRY if more else Verdict.UNKNOWN)
    assert status is not None
    if status == 401:
        # A 401 means nothing was processed: refresh once, whatever the method.
        return Decision(Verdict.RAISE if reauthed else Verdict.REAUTH)
    if status == 429:
        # 429 was not processed either, so even unsafe calls may wait and retry.
        if retry_after is None or retry_after > policy.max_retry_after or not more:
            return Decision(Verdict.RAISE)
        return Decision(Verdict.RETRY, delay=retry_after)
    if status >= 500:
        if not idempotent:
            return Decision(Verdict.UNKNOWN)
        return Decision(Verdict.RETRY if more else Verdict.RAISE)
    return Decision(Verdict.DONE)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return None
    return max(0.0, seconds)
