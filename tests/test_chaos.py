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
    assert "duplicates: 0 (planted: 0)" in table
    assert "secret leaks: 0" in table
    missed = {f.flow_id: f.problems for f in report.misses}
    assert missed == {}, table
    assert report.ok


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_planted_duplicates_are_found_exactly() -> None:
    """The negative control: K calls planted through a side door make the count read K."""
    report = await run_chaos(ChaosConfig(flows=40, seed=2, plant=4))
    table = report.table()
    assert report.planted == [
        "create_workflow",
        "approve_documents",
        "confirm_signature",
        "create_workflow",
    ], table
    assert report.duplicates == 4, table
    assert "duplicates: 4 (planted: 4)" in table
    assert report.ok, table


def test_a_run_passes_only_when_the_count_equals_what_was_planted() -> None:
    from chaos._harness import ChaosReport

    def report(found: int, planted: int, asked: int) -> ChaosReport:
        return ChaosReport(
            ChaosConfig(flows=1, plant=asked), [], duplicates=found, planted=["x"] * planted
        )

    assert report(0, 0, 0).ok
    assert report(4, 4, 4).ok
    assert not report(3, 4, 4).ok  # blind to one
    assert not report(5, 4, 4).ok  # one real duplicate beside the planted ones
    assert not report(2, 2, 4).ok  # could not plant all it was asked to
    assert not report(1, 0, 0).ok
