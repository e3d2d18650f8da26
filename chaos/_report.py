"""The summary table of a chaos run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from qes_async._client.download import safe_file_name
from qes_async.sandbox import HTTP_FAULTS

from ._checks import UNSAFE

__all__ = ["render"]

OUTCOMES = ("signed", "declined", "kyc_required", "failed", "none")


def _collide(names: tuple[str, ...]) -> bool:
    return len({safe_file_name(n, "d") for n in names}) < len(names)


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
    classes = [*OUTCOMES, *sorted(set(outcomes) - set(OUTCOMES))]
    faults = ", ".join(f"{k} {report.faults[k]}" for k in HTTP_FAULTS)
    hooks = report.webhooks
    count = report.count
    docs = Counter(len(f.names) for f in report.flows)
    colliding = sum(1 for f in report.flows if _collide(f.names))
    lines += [
        "",
        "flows: " + str(len(report.flows)),
        "outcomes: " + ", ".join(f"{k} {outcomes[k]}" for k in classes),
        f"requests: {report.requests} (faults injected: {faults})",
        "fault kinds of the flows: "
        f"cancelled and resumed from SQLite {sum(f.cancelled for f in report.flows)}, "
        + ", ".join(f"{n} document(s) {docs[n]}" for n in sorted(docs))
        + f", names that reduce alike {colliding}, "
        f"unreadable PDFs expected {sum(f.unreadable for f in report.flows)}",
        "unsafe calls that reached the service: "
        + ", ".join(f"{route} {count.reached[route]}" for route in UNSAFE),
        f"orphan workflows (create answers lost by the plan): {sum(count.orphans.values())}, "
        f"reported by their flows: {sum(f.unconfirmed_creates for f in report.flows)}",
        "upload repeats after a lost answer or a cancel (same documents again): "
        f"{count.upload_repeats}",
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
        f"duplicates: {report.duplicates} (planted: {len(report.planted)})",
        f"secret leaks: {report.leaks} ({report.secrets_checked} secrets searched in "
        f"{report.texts_scanned} log records and exception texts)",
    ]
    for flow in report.misses[:20]:
        lines.append(f"  MISS {flow.flow_id} ({flow.scenario.name}): {'; '.join(flow.problems)}")
    if report.planted and len(report.planted) < cfg.plant:
        lines.append(f"  PLANTED only {len(report.planted)} of {cfg.plant} asked")
    if report.duplicates:
        by_route = ", ".join(f"{k} {v}" for k, v in sorted(count.by_route.items()))
        lines.append(f"  duplicates by route: {by_route}")
    for detail in report.duplicate_details[:20]:
        lines.append(f"  DUPLICATE {detail}")
    if report.leaks:
        lines.append("  LEAKED: " + ", ".join(sorted(set(report.leak_kinds))))
    return "\n".join(lines)
