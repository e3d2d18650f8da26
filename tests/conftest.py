"""Shared test fixtures.

Every test's log records are captured (every logger, DEBUG and up, the ``qes_async`` logger
switched to DEBUG) and the test fails if any record, formatted with its traceback, contains a
registered secret. Register the secrets a test uses with :func:`register_secret` (import it
from ``conftest``) or the ``secrets_registry`` fixture::

    from conftest import register_secret

    register_secret(client_secret, "+31612345678", passcode)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

_SECRETS: set[str] = set()
# Strings shorter than this match by accident (timestamps, ids), so they are refused.
MIN_SECRET_LENGTH = 4


def register_secret(*values: str | bytes) -> None:
    """Declare values that must never appear in any log record of the current test."""
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if len(text) < MIN_SECRET_LENGTH:
            raise ValueError(f"secrets shorter than {MIN_SECRET_LENGTH} characters are refused")
        _SECRETS.add(text)


def registered_secrets() -> frozenset[str]:
    """The secrets registered so far in the current test."""
    return frozenset(_SECRETS)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        return [self.format(record) for record in self.records]


@pytest.fixture
def secrets_registry() -> Callable[..., None]:
    """The :func:`register_secret` function, as a fixture."""
    return register_secret


@pytest.fixture
def captured_logs() -> list[logging.LogRecord]:
    """The log records captured so far in this test (the autouse capture's list)."""
    return _CURRENT.records if _CURRENT is not None else []


_CURRENT: _Capture | None = None


@pytest.fixture(autouse=True)
def _no_secrets_in_logs() -> Iterator[None]:
    """Capture every log record of the test; fail the test if one holds a secret."""
    global _CURRENT
    _SECRETS.clear()
    capture = _Capture()
    root = logging.getLogger()
    ours = logging.getLogger("qes_async")
    old_root, old_ours = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    _CURRENT = capture
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(old_root)
        ours.setLevel(old_ours)
        _CURRENT = None
    leaks = [
        (secret, text) for text in capture.texts() for secret in _SECRETS if secret in text
    ]
    _SECRETS.clear()
    if leaks:
        secret, text = leaks[0]
        pytest.fail(
            f"{len(leaks)} log record(s) leak a registered secret "
            f"({len(secret)} chars); first: {text.replace(secret, '<SECRET>')[:300]!r}",
            pytrace=False,
        )
