"""The after-run checks: duplicates in the request log, and secrets in captured text."""

from __future__ import annotations

import logging
import re
import traceback
from collections import Counter
from typing import Any

__all__ = ["Capture", "count_duplicates", "find_leaks"]

# Secrets are looked up as whole words of the captured text: long ones (tokens, the client
# secret) as runs of URL-safe characters, short ones (passcodes, phone digits) as runs of
# digits, so a passcode inside a longer number (a timestamp) is not a false hit.
_WORD = re.compile(r"[A-Za-z0-9_\-]{8,}")
_DIGITS = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?![A-Za-z0-9])")


class Capture(logging.Handler):
    """Every log record (with its traceback) and every exception text of the run, kept as
    the set of words and digit runs it contains."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.words: set[str] = set()
        self.digits: set[str] = set()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add_text(self.format(record))
        except Exception:  # a record that cannot be formatted must not stop the run
            self.add_text(repr(record.msg))

    def add_text(self, text: str) -> None:
        self.count += 1
        self.words.update(_WORD.findall(text))
        self.digits.update(_DIGITS.findall(text))

    def add_exception(self, exc: BaseException) -> None:
        """The message, the repr and the whole traceback (with causes)."""
        self.add_text(str(exc))
        self.add_text(repr(exc))
        self.add_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def add_context(self, context: dict[str, Any]) -> None:
        """An exception the loop reported (a task nobody awaited)."""
        self.add_text(str(context.get("message", "")))
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.add_exception(exc)


def find_leaks(capture: Capture, secrets: dict[str, str]) -> list[str]:
    """The kinds of the secrets found in the captured text (one entry per secret found)."""
    found = []
    for secret, kind in secrets.items():
        if secret.lstrip("+").isdigit():
            hit = secret.lstrip("+") in capture.digits
        else:
            hit = secret in capture.words or _contains(capture.words, secret)
        if hit:
            found.append(kind)
    return found


def _contains(words: set[str], secret: str) -> bool:
    # A URL-safe secret is itself one word; it can only hide inside a longer word.
    return any(secret in word for word in words if len(word) > len(secret))


def count_duplicates(sandbox: Any, flows: list[Any]) -> tuple[int, list[str]]:
    """Calls done more than once that must be done once, from the sandbox's own records.

    * workflows: per flow, the workflows the service created for its client reference,
      beyond one per generation of the flow;
    * approvals: per signature, processed approvals beyond one (a refused approval is not
      processed);
    * confirmations: per signature, processed confirmations that were not wrong passcodes,
      beyond one.
    """
    signatures = sandbox.service.signatures
    created = Counter(sig.client_reference for sig in signatures.values())
    details = []
    total = 0
    for flow in flows:
        extra = created[flow.reference] - flow.generations
        if extra > 0:
            total += extra
            details.append(f"{flow.flow_id}: {extra} extra workflow(s)")
    processed: Counter[tuple[str, str]] = Counter(
        (r.route, r.signature_id)
        for r in sandbox.request_log
        if r.processed and r.route in ("approve_documents", "confirm_signature")
    )
    for (route, sid), count in processed.items():
        if route == "confirm_signature":
            count -= signatures[sid].wrong_passcodes
        if count > 1:
            total += count - 1
            details.append(f"{sid}: {route} processed {count} times")
    return total, details
