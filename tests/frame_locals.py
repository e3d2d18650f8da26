"""What an error tracker records of a traceback: the locals of the SDK's own frames.

Sentry, rich tracebacks and loguru's ``diagnose`` show the local variables of every frame
of a traceback; the threat tests walk them to check that no secret is there.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

__all__ = ["leaks", "sdk_frame_locals", "shown"]


def shown(value: Any, depth: int = 0) -> list[str]:
    """What an error tracker shows of a local: strings as they are, containers walked,
    every other object by its ``repr`` (as Sentry's serializer does)."""
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value).decode("latin-1")]
    if isinstance(value, str):
        return [value]
    if depth < 6 and isinstance(value, dict):
        return [t for k, v in value.items() for t in (*shown(k, depth + 1), *shown(v, depth + 1))]
    if depth < 6 and isinstance(value, (list, tuple, set, frozenset)):
        return [t for item in value for t in shown(item, depth + 1)]
    try:
        return [repr(value)]
    except Exception:  # a broken repr shows nothing
        return []


def sdk_frame_locals(
    exc: BaseException, modules: tuple[str, ...] = ("qes_async",)
) -> list[tuple[str, str, str]]:
    """(function, local name, shown text) for every qes_async frame (or of ``modules``) of
    ``exc``'s traceback and of every exception chained to it."""
    seen: list[tuple[str, str, str]] = []
    pending: list[BaseException] = [exc]
    visited: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if str(frame.f_globals.get("__name__", "")).startswith(modules):
                for name, value in frame.f_locals.items():
                    for text in shown(value):
                        seen.append((frame.f_code.co_name, name, text))
            tb = tb.tb_next
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def leaks(
    exc: BaseException, *secrets: str, modules: tuple[str, ...] = ("qes_async",)
) -> list[tuple[str, str]]:
    """(function, local name) of every SDK frame local that shows one of ``secrets``."""
    return [
        (function, name)
        for function, name, text in sdk_frame_locals(exc, modules)
        for secret in secrets
        if secret in text
    ]
