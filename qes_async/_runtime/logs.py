"""The ``qes_async`` logger: one DEBUG line per HTTP attempt, never a secret.

``QES_ASYNC_LOG=debug`` (or info, warning...) in the environment sets the logger's level and,
if nothing handles it yet, adds a stderr handler, so the lines show without code changes.
"""

from __future__ import annotations

import logging
import os

__all__ = ["ENV_VAR", "configure_from_env", "log_attempt", "logger"]

ENV_VAR = "QES_ASYNC_LOG"
logger = logging.getLogger("qes_async")


def configure_from_env(environ: dict[str, str] | None = None) -> bool:
    """Apply ``QES_ASYNC_LOG``; True if it named a level."""
    value = (environ if environ is not None else os.environ).get(ENV_VAR, "").strip().upper()
    level = logging.getLevelName(value) if value else None
    if not isinstance(level, int):
        return False
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return True


def log_attempt(
    *,
    method: str,
    operation: str,
    attempt: int,
    elapsed: float,
    status: int | None = None,
    error: str | None = None,
    request_id: str | None = None,
) -> None:
    """One line per attempt: method, route name, outcome, elapsed, attempt, request id.

    Only route names are logged, never URLs, bodies or headers: those may hold secrets.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return
    outcome = f"status={status}" if status is not None else f"error={error}"
    logger.debug(
        "%s %s %s elapsed=%.3fs attempt=%d request_id=%s",
        method,
        operation,
        outcome,
        elapsed,
        attempt,
        request_id or "-",
    )
