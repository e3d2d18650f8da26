"""The flow's event hub makes queues and tasks only for those who listen, and flows share
what is frozen: what a parked flow does not need, it does not hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import pytest
from flow_helpers import world

from qes_async import FlowEvent, FlowEventKind, RestartPolicy
from qes_async._flow.events import EventHub


def _event(n: int = 0) -> FlowEvent:
    return FlowEvent(FlowEventKind.STATUS_CHANGED, "flow-1", 1, float(n))


async def test_a_hub_with_plain_callbacks_makes_no_queue_and_no_task() -> None:
    seen: list[FlowEvent] = []
    hub = EventHub([seen.append])
    for n in range(3):
        hub.emit(_event(n))
    hub.close()
    assert [e.time for e in seen] == [0.0, 1.0, 2.0]
    assert hub._queues is None
    assert hub._tasks is None


async def test_async_callbacks_and_iterators_get_their_own_and_let_go() -> None:
    got: list[float] = []

    async def slow(event: FlowEvent) -> None:
        await asyncio.sleep(0)
        got.append(event.time)

    hub = EventHub([slow])
    events = hub.iterate()  # registered now, before anything is emitted
    hub.emit(_event(1))
    assert hub._tasks is not None
    assert len(hub._tasks) == 1
    assert hub._queues is not None
    assert len(hub._queues) == 1
    hub.close()
    assert [e.time async for e in events] == [1.0]
    await asyncio.sleep(0.01)
    assert got == [1.0]
    assert hub._tasks == set()  # the finished callback's task is let go
    assert hub._queues == []  # and the ended iterator's queue


async def test_flows_not_given_a_restart_policy_share_one_frozen_default(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        first, second = w.flow(), w.flow()
        own = w.flow(restart_policy=RestartPolicy(max_restarts=1))
    assert first.restart_policy is second.restart_policy
    assert first.restart_policy == RestartPolicy()
    assert own.restart_policy.max_restarts == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.restart_policy.max_restarts = 9  # type: ignore[misc]


async def test_a_flow_nobody_listens_to_builds_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from qes_async._flow import driver

    built: list[FlowEventKind] = []

    def counting(kind: FlowEventKind, *args: object, **kw: object) -> FlowEvent:
        built.append(kind)
        return FlowEvent(kind, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(driver, "FlowEvent", counting)
    logging.getLogger("qes_async.flow").setLevel(logging.INFO)
    try:
        async with world(tmp_path) as w:
            quiet = await w.flow("quiet").run()
            assert built == []  # the old code: an event per step, seen by no one
            seen: list[FlowEvent] = []
            heard = await w.flow("heard", on_event=seen.append).run()
    finally:
        logging.getLogger("qes_async.flow").setLevel(logging.NOTSET)
    assert quiet.outcome.value == heard.outcome.value == "signed"
    assert built
    assert [e.kind for e in seen] == built
    assert seen[-1].kind is FlowEventKind.FINISHED
