"""SignatureFlow end to end against the sandbox on a shared fake clock."""

from __future__ import annotations

from pathlib import Path

from flow_helpers import world

from qes_async import FlowOutcome


async def test_completed_flow_end_to_end(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        flow = w.flow()
        result = await flow.run()
        assert result.outcome is FlowOutcome.SIGNED
        sig = result.signature_id
        assert sig is not None
        counts = w.counts(sig)
        assert counts["approve_documents"] == 1
        assert counts["confirm_signature"] == 1
        assert w.created() == 1
        assert len(result.documents) == 1
        print(result)
