"""The chaos harness in-process: 200 flows under every fault, then the exact checks."""

from __future__ import annotations

import pytest

from chaos import ChaosConfig, run_chaos

FLOWS = 200


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_200_flows_under_faults_do_nothing_twice_and_leak_nothing() -> None:
    report = await run_chaos(ChaosConfig(flows=FLOWS, seed=1))
    table = report.table()
    assert len(report.flows) == FLOWS
    assert report.duplicates == 0, table
    assert report.leaks == 0, table
    assert report.secrets_checked > FLOWS  # every mobile number at least, plus the rest
    assert "duplicates: 0" in table
    assert "secret leaks: 0" in table
    missed = {f.flow_id: f.problems for f in report.misses}
    assert missed == {}, table
    assert report.ok
