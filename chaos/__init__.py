"""Chaos runs: many signature flows through one sandbox with every fault knob turned on.

``python -m chaos --flows N [--seed S]`` runs the flows, checks every outcome, the
sandbox's request log (nothing done twice that must happen once), every downloaded
document (hash and PAdES) and every captured log record, exception message and repr (no
secret), prints a summary table and exits non-zero on any miss, duplicate or leak.
:func:`run_chaos` does the same in-process and returns a :class:`ChaosReport`.
"""

from __future__ import annotations

from ._harness import ChaosConfig, ChaosReport, run_chaos

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos"]
