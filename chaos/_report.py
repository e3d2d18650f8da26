"""The summary table of a chaos run."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["render"]


def render(report: Any) -> str:
    """Plain text, one figure a line, a table of outcomes per scenario."""
    cfg = report.config
    lines = [
        f"chaos: {len(report.flows)} flows, seed {cfg.seed}, concurrency {cfg.concurrency}",
        f"wall time: {report.wall_seconds:.1f} s   simulated time: "
        f"{report.sim_seconds / 3600:.1f} h",
        "",
        f"{'scenario':<22}{'flows':>6}{'signed':>8}{'kyc':>6}{'declined':>9}"
        f"{'failed':>8}{'missed':>8}{'restarts':>10}{'resumes':>9}",
    ]
    by: dict[str, list[Any]] = {}
    for flow in report.flows:
        by.setdefault(flow.scenario.name, []).append(flow)
    for name, flows in sorted(by.items()):
        out = Counter(f.outcome for f in flows)
        lines.append(
            f"{name:<22}{len(flows):>6}{out['signed']:>8}{out['kyc_required']:>6}"
            f"{out['declined']:>9}{out['failed'] + out[None]:>8}"
            f"{sum(f.missed for f in flows):>8}"
            f"{sum(max(0, f.generations - 1) for f in flows):>10}"
            f"{sum(f.resumes for f in flows):>9}"
        )
    outcomes = Counter(f.outcome or "none" for f in report.flows)
    faults = ", ".join(f"{k} {v}" for k, v in sorted(report.faults.items()))
    hooks = report.webhooks
    lines += [
        "",
        "flows: " + str(len(report.flows)),
        "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        f"requests: {report.requests} (faults injected: {faults})",
        f"retries: {report.retried} requests faulted or refused 401 and tried again",
        f"token revocations: {report.revocations} (plus revoke_token faults)",
        f"restarts (new workflows): {sum(max(0, f.generations - 1) for f in report.flows)}",
        f"resumes after spent retries: {sum(f.resumes for f in report.flows)}",
        f"webhooks: {sum(hooks.values())} attempts: delivered {hooks['delivered']}, "
        f"dropped {hooks['drop']}, duplicated {hooks['duplicate']}, "
        f"delayed {hooks['delay']}, reordered {hooks['reorder']}",
        f"webhooks lost: {hooks['drop']}, recovered (flows that lost one and still "
        f"reached their outcome): {report.lost_and_recovered}",
        f"documents downloaded and checked (sha256, PAdES valid): {report.documents_checked}",
        f"misses: {len(report.misses)}",
        f"duplicates: {report.duplicates}",
        f"secret leaks: {report.leaks} ({report.secrets_checked} secrets searched in "
        f"{report.texts_scanned} log records and exception texts)",
    ]
    for flow in report.misses[:20]:
        lines.append(f"  MISS {flow.flow_id} ({flow.scenario.name}): {'; '.join(flow.problems)}")
    for detail in report.duplicate_details[:20]:
        lines.append(f"  DUPLICATE {detail}")
    if report.leaks:
        lines.append("  LEAKED: " + ", ".join(sorted(set(report.leak_kinds))))
    return "\n".join(lines)
