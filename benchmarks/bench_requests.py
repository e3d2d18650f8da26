"""2. Requests per flow: every HTTP request the sandbox saw for one completed one-document
flow, against the floor (the action calls plus one status read per webhook that matters).

Webhook path: hybrid waiter fed by the receiver. Polling path: a signer who takes 60 s to
consent and 30 s to type the passcode, on the fake clock.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from qes_async import FlowOutcome

from ._common import Row
from ._world import world


async def _one_flow(folder: Path, webhooks: bool) -> tuple[int, Counter[str], int]:
    """Requests seen, per route, and webhooks delivered, for one completed flow."""
    async with world(folder, webhooks=webhooks) as w:
        w.sandbox.add_client("client-1")
        signer = w.signer() if webhooks else w.signer(consent_delay=60, passcode_delay=30)
        result = await w.flow("client-1", signer).run()
        assert result.outcome is FlowOutcome.SIGNED
        routes = Counter(r.route or r.path for r in w.sandbox.request_log)
        hooks = len({d.status for d in w.sandbox.webhook_deliveries}) if webhooks else 0
        return len(w.sandbox.request_log), routes, hooks


def run(quick: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, webhooks, target in (("webhooks", True, 14), ("polling", False, 30)):
            total, routes, hooks = asyncio.run(_one_flow(Path(tmp) / label, webhooks))
            reads = routes["get_signature_status"]
            note = f"{total - reads} action calls + {reads} status reads"
            note += f"; {hooks} webhook statuses delivered" if webhooks else ""
            rows.append(
                Row(
                    f"2 requests/flow, {label}",
                    total,
                    target,
                    False,
                    unit="",
                    note=note,
                )
            )
    return rows
