"""PollingWaiter and the shared wait rules, against a scripted status source and a FakeClock."""

from __future__ import annotations

import random

import pytest

from qes_async import (
    FakeClock,
    InvalidInputError,
    KYCRequiredError,
    NotFoundError,
    PollingWaiter,
    RateLimitedError,
    RequestNotSentError,
    ServerError,
    Status,
    StatusReport,
    StatusWaiter,
    UnreachableStatusError,
    WaitTimeoutError,
)

SID = "sig-1"


class ScriptedSource:
    """Answers from a timeline of (seconds after start, status); may raise on given reads."""

    def __init__(
        self,
        clock: FakeClock,
        timeline: list[tuple[float, str]],
        failures: dict[int, Exception] | None = None,
    ) -> None:
        self.clock = clock
        self.start = clock.time()
        self.timeline = timeline
        self.failures = failures or {}
        self.reads: list[float] = []

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        elapsed = self.clock.time() - self.start
        self.reads.append(elapsed)
        failure = self.failures.get(len(self.reads))
        if failure is not None:
            raise failure
        status = [s for t, s in self.timeline if t <= elapsed][-1]
        return StatusReport(signature_id=signature_id, status=Status(status), status_code=7)


def waiter(source: ScriptedSource, clock: FakeClock, **kw: object) -> PollingWaiter:
    options: dict[object, object] = {
        "initial_interval": 1.0,
        "max_interval": 8.0,
        "factor": 2.0,
        "jitter": 0.0,
        "max_requests_per_wait": None,
    }
    options.update(kw)
    return PollingWaiter(source, clock=clock, **options)  # type: ignore[arg-type]


async def test_polling_waiter_satisfies_the_protocol() -> None:
    clock = FakeClock()
    assert isinstance(waiter(ScriptedSource(clock, [(0, "new")]), clock), StatusWaiter)


async def test_schedule_grows_from_fast_start_to_the_cap() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new"), (30, "pending")])
    report = await waiter(source, clock).wait_for(SID, {Status.PENDING}, deadline=clock.time() + 99)
    assert report.status is Status.PENDING
    assert source.reads == [0, 1, 3, 7, 15, 23, 31]


async def test_schedule_starts_fast_again_when_the_status_changes() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new"), (5, "pending"), (40, "user_consent_required")])
    await waiter(source, clock).wait_for(SID, ["user_consent_required"], deadline=clock.time() + 99)
    # 7 sees pending (a change): back to 1 s, 2 s, 4 s, then the 8 s cap.
    assert source.reads == [0, 1, 3, 7, 8, 10, 14, 22, 30, 38, 46]


async def test_last_read_happens_at_the_deadline_never_past_it() -> None:
    clock = FakeClock()
    start = clock.time()
    source = ScriptedSource(clock, [(0, "new")])
    with pytest.raises(WaitTimeoutError) as caught:
        await waiter(source, clock).wait_for(SID, {"signed"}, deadline=start + 10)
    assert source.reads == [0, 1, 3, 7, 10]
    assert clock.time() == start + 10
    assert caught.value.last is not None
    assert caught.value.last.status is Status.NEW
    assert caught.value.targets == ("signed",)


async def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    limited = RateLimitedError(429, retry_after=10.0)
    source = ScriptedSource(clock, [(0, "new"), (12, "pending")], failures={2: limited})
    await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 99)
    # Read 2 (at 1 s) is rate limited: the next waits 10 s instead of 2 s.
    assert source.reads == [0, 1, 11, 15]


async def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    start = clock.time()
    limited = RateLimitedError(429, retry_after=600.0)
    source = ScriptedSource(clock, [(0, "new")], failures={1: limited})
    with pytest.raises(WaitTimeoutError) as caught:
        await waiter(source, clock).wait_for(SID, {"pending"}, deadline=start + 60)
    assert clock.time() == start
    assert caught.value.last is None


async def test_transient_errors_are_retried_on_the_schedule() -> None:
    clock = FakeClock()
    failures: dict[int, Exception] = {
        1: RequestNotSentError("connection refused"),
        2: ServerError(503),
    }
    source = ScriptedSource(clock, [(0, "pending")], failures=failures)
    report = await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 99)
    assert report.status is Status.PENDING
    assert source.reads == [0, 1, 3]


async def test_other_errors_propagate() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new")], failures={1: NotFoundError(404)})
    with pytest.raises(NotFoundError):
        await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 99)


async def test_request_budget_keeps_the_last_read_for_the_deadline() -> None:
    clock = FakeClock()
    start = clock.time()
    source = ScriptedSource(clock, [(0, "new")])
    w = waiter(source, clock, max_requests_per_wait=3)
    with pytest.raises(WaitTimeoutError):
        await w.wait_for(SID, {"pending"}, deadline=start + 100)
    assert source.reads == [0, 1, 100]


async def test_request_budget_final_read_can_still_succeed() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new"), (50, "pending")])
    w = waiter(source, clock, max_requests_per_wait=2)
    report = await w.wait_for(SID, {"pending"}, deadline=clock.time() + 100)
    assert report.status is Status.PENDING
    assert source.reads == [0, 100]


async def test_jitter_only_shortens_delays_within_its_fraction() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new"), (200, "pending")])
    w = waiter(source, clock, jitter=0.5, rng=random.Random(7))
    await w.wait_for(SID, {"pending"}, deadline=clock.time() + 999)
    delays = [b - a for a, b in zip(source.reads, source.reads[1:], strict=False)]
    bases = [min(8, 2**i) for i in range(len(delays))]
    assert all(base * 0.5 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert len(set(delays[4:])) > 1  # really jittered, not lockstep


async def test_same_seed_gives_the_same_schedule() -> None:
    runs = []
    for _ in range(2):
        clock = FakeClock()
        source = ScriptedSource(clock, [(0, "new"), (60, "pending")])
        await waiter(source, clock, jitter=0.3, seed=42).wait_for(
            SID, {"pending"}, deadline=clock.time() + 999
        )
        runs.append(source.reads)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("deadline", [None, float("inf"), float("nan"), "soon"])
async def test_a_wait_without_a_real_deadline_is_refused(deadline: object) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new")])
    with pytest.raises(InvalidInputError) as caught:
        await waiter(source, clock).wait_for(SID, {"pending"}, deadline=deadline)  # type: ignore[arg-type]
    assert caught.value.field == "deadline"
    assert source.reads == []


@pytest.mark.parametrize("targets", [set(), "signed", [3]])
async def test_bad_targets_are_refused(targets: object) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new")])
    with pytest.raises(InvalidInputError) as caught:
        await waiter(source, clock).wait_for(SID, targets, deadline=clock.time() + 9)  # type: ignore[arg-type]
    assert caught.value.field == "targets"


async def test_kyc_required_fails_fast_with_its_codes() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new"), (2, "kyc_required")])
    with pytest.raises(KYCRequiredError) as caught:
        await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 999)
    assert caught.value.report.status is Status.KYC_REQUIRED
    assert caught.value.status_codes == (7,)
    assert source.reads == [0, 1, 3]


async def test_kyc_required_is_returned_when_it_is_a_target() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "kyc_required")])
    report = await waiter(source, clock).wait_for(
        SID, {"pending", "kyc_required"}, deadline=clock.time() + 9
    )
    assert report.status is Status.KYC_REQUIRED


@pytest.mark.parametrize("status", ["invalid_signature", "signed"])
async def test_terminal_statuses_that_are_not_targets_fail_fast(status: str) -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, status)])
    with pytest.raises(UnreachableStatusError) as caught:
        await waiter(source, clock).wait_for(
            SID, {"confirmation_required"}, deadline=clock.time() + 999
        )
    assert type(caught.value) is UnreachableStatusError
    assert caught.value.report.status == Status(status)
    assert source.reads == [0]


async def test_a_status_past_every_target_fails_fast() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "confirmation_required")])
    with pytest.raises(UnreachableStatusError) as caught:
        await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 999)
    assert caught.value.report.status is Status.CONFIRMATION_REQUIRED


async def test_unknown_statuses_pass_through_and_waiting_goes_on() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "brand_new_state"), (2, "pending")])
    report = await waiter(source, clock).wait_for(SID, {"pending"}, deadline=clock.time() + 99)
    assert report.status is Status.PENDING


async def test_error_that_recovers_within_grace_is_waited_out() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "error"), (20, "pending")])
    w = waiter(source, clock, error_grace=60.0)
    report = await w.wait_for(SID, {"pending"}, deadline=clock.time() + 999)
    assert report.status is Status.PENDING


async def test_error_lasting_past_grace_fails_at_the_end_of_grace() -> None:
    clock = FakeClock()
    start = clock.time()
    source = ScriptedSource(clock, [(0, "pending"), (2, "error")])
    w = waiter(source, clock, error_grace=10.0, max_interval=60.0)
    with pytest.raises(UnreachableStatusError) as caught:
        await w.wait_for(SID, {"signed"}, deadline=start + 999)
    assert caught.value.report.status is Status.ERROR
    # error first seen at 3 s; the read at 3 + 10 s confirms it lasted the whole grace.
    assert source.reads[-1] == 13
    assert clock.time() == start + 13


async def test_error_is_returned_when_it_is_a_target() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "error")])
    report = await waiter(source, clock, error_grace=0.0).wait_for(
        SID, {"error"}, deadline=clock.time() + 9
    )
    assert report.status is Status.ERROR


def test_invalid_schedule_is_refused_at_construction() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, [(0, "new")])
    with pytest.raises(InvalidInputError) as caught:
        PollingWaiter(source, clock=clock, initial_interval=5, max_interval=1)
    assert caught.value.field == "max_interval"
    with pytest.raises(InvalidInputError):
        PollingWaiter(source, clock=clock, max_requests_per_wait=0)
