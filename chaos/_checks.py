"""The after-run checks: duplicate unsafe calls in the request log, and secrets in
captured text."""

from __future__ import annotations

import logging
import re
import traceback
from collections import Counter
from typing import Any

import attrs

__all__ = ["Capture", "DuplicateCount", "count_duplicates", "find_leaks", "reached_logic"]

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


UNSAFE = (
    "create_workflow",
    "upload_documents",
    "upload_selfie",
    "approve_documents",
    "confirm_signature",
)
# Faults answered before the service's logic runs: the call never reached it.
BEFORE_LOGIC = frozenset({"server_error", "rate_limit", "drop_before", "revoke_token"})
# Faults after which the service did the work but the client never read the answer.
ANSWER_LOST = frozenset({"drop_after", "slow_answer", "slow"})


@attrs.define
class DuplicateCount:
    """What the independent count found.

    ``total`` counts unsafe calls beyond what the ceremony needs; ``orphans`` are unused
    workflows whose create answer the fault plan lost (the contract leaves no way to know
    their ids: expected, and each must be reported by its flow); ``upload_repeats`` are
    uploads sent again after a lost upload answer, which the contract forces (its status
    does not show whether documents arrived) and the service refuses with 409.
    """

    total: int = 0
    details: list[str] = attrs.Factory(list)
    by_route: Counter[str] = attrs.Factory(Counter)
    orphans: Counter[str] = attrs.Factory(Counter)  # client reference -> orphans
    upload_repeats: int = 0  # after a lost answer or a cancel
    reached: Counter[str] = attrs.Factory(Counter)  # unsafe calls that reached the logic

    def add(self, route: str, extra: int, detail: str) -> None:
        self.total += extra
        self.by_route[route] += extra
        self.details.append(detail)


def reached_logic(record: Any) -> bool:
    """An unsafe call that got past authentication and every fault answered before the
    service's logic, whatever the service then answered (409 included)."""
    return record.route in UNSAFE and record.fault not in BEFORE_LOGIC and record.status != 401


def count_duplicates(
    sandbox: Any, typed: Counter[str], cancelled: set[str] | frozenset[str] = frozenset()
) -> DuplicateCount:
    """Unsafe calls that reached the service beyond what one ceremony per generation needs,
    counted from the sandbox's request log alone (what arrived, and when), never from its
    ``processed`` judgement or its 409s, nor from what the flows say of themselves.

    Needed, per signature (one generation): one upload of documents (plus one repeat per
    earlier upload whose answer was lost, and one for a flow the run cancelled: both
    leave the upload's outcome unknown, and the contract's status cannot tell), one
    selfie, one approval, and one confirmation per passcode the simulated signer really
    typed for it (``typed``). Per client
    reference: every workflow it creates must be used by a later call; an unused one is a
    duplicate, unless its create answer was lost (an orphan), and at most one of its
    workflows may end signed.
    """
    log = sandbox.request_log
    count = DuplicateCount()
    calls = [r for r in log if reached_logic(r)]
    count.reached = Counter(r.route for r in calls)
    used = {r.signature_id for r in log if r.route != "create_workflow" and r.signature_id}
    for r in calls:
        if r.route != "create_workflow" or r.signature_id is None or r.signature_id in used:
            continue
        if r.fault in ANSWER_LOST:
            count.orphans[r.client_reference or "?"] += 1
        else:
            count.add(
                "create_workflow",
                1,
                f"{r.client_reference}: workflow {r.signature_id} created and never used",
            )
    signed = Counter(
        sig.client_reference
        for sig in sandbox.service.signatures.values()
        if getattr(sig.status, "value", sig.status) == "signed"
    )
    for reference, n in signed.items():
        if n > 1:
            count.add("create_workflow", n - 1, f"{reference}: {n} workflows signed")
    per = Counter((r.route, r.signature_id) for r in calls if r.route != "create_workflow")
    lost = Counter(
        (r.route, r.signature_id)
        for r in calls
        if r.route == "upload_documents" and r.fault in ANSWER_LOST
    )
    owner = {r.signature_id: r.client_reference for r in log if r.route == "create_workflow"}
    for r in calls:
        if r.route == "upload_documents" and owner.get(r.signature_id) in cancelled:
            lost[(r.route, r.signature_id)] = max(1, lost[(r.route, r.signature_id)])
    for (route, sid), n in sorted(per.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        allowed = typed[sid] if route == "confirm_signature" else 1
        if route == "upload_documents":
            repeats = min(n - 1, lost[(route, sid)])
            count.upload_repeats += max(0, repeats)
            allowed += max(0, repeats)
        if n > allowed:
            count.add(
                route,
                n - allowed,
                f"{sid}: {route} reached the service {n} times, {allowed} needed",
            )
    return count
