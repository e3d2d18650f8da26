"""Chaos runs: many signature flows through one sandbox with every fault knob turned on.

``python -m chaos --flows N [--seed S] [--plant-duplicates K]`` runs the flows, checks
every outcome, the sandbox's request log (no unsafe call reached the service more often
than the ceremony needs: an independent count, with a planted negative control), every
downloaded document (one file each, its hash, its PAdES outcome) and every captured log
record, exception message and repr (no secret), prints a summary table and exits
non-zero on any miss, leak, or a count that differs from what was planted.
:func:`run_chaos` does the same in-process and returns a :class:`ChaosReport`.
"""

from __future__ import annotations

from ._harness import ChaosConfig, ChaosReport, run_chaos

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos"]
