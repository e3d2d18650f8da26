"""What every parked flow would otherwise hold a copy of is one shared object.

A waiting flow's memory is multiplied by the flows parked at once (benchmark 3's memory
row), so equal target sets and the JSON headers and empty params of every request are
shared, and the shared ones cannot be changed through one request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from benchmarks._world import world
from qes_async import FlowOutcome, SignatureFlow, Status
from qes_async._client.protocol import JSON_HEADERS, Request, status_report
from qes_async._waiting.logic import normalize_targets


def test_equal_target_sets_are_one_object() -> None:
    first = normalize_targets([Status.PENDING, "signed"])
    second = normalize_targets(["signed", Status.PENDING])
    assert first == frozenset({Status.PENDING, Status.SIGNED})
    assert first is second


def test_requests_share_their_default_headers_and_params_read_only() -> None:
    one = Request("GET", "get_signature_status", "/v1/signatures/a/status")
    two = Request("GET", "get_signature_status", "/v1/signatures/b/status")
    assert one.headers is two.headers is JSON_HEADERS
    assert one.params is two.params
    assert dict(one.headers) == {"Accept": "application/json"}
    with pytest.raises(TypeError):
        one.headers["Accept"] = "text/html"  # type: ignore[index]
    with pytest.raises(TypeError):
        one.params["x"] = "y"  # type: ignore[index]


def test_a_status_report_holds_the_callers_signature_id() -> None:
    # A waiting flow holds its last report: its id is the flow's own string, not a copy
    # decoded from the answer; an answer for another signature keeps what it says.
    mine = "".join(["6513270e-269e-4d37", "-b2a7-4de452e6b438"])
    body = b'{"signatureId":"6513270e-269e-4d37-b2a7-4de452e6b438","status":"pending"}'
    report = status_report(200, {}, body, None, mine)
    assert report.signature_id is mine
    assert report.status is Status.PENDING
    other = status_report(200, {}, body, None, "another")
    assert other.signature_id == "6513270e-269e-4d37-b2a7-4de452e6b438"
    assert status_report(200, {}, body, None) == report


PARKED = ["run", "perform", "_wait", "wait_for"]


def _stack(task: asyncio.Future[object]) -> list[str]:
    """The coroutines a task is suspended in, outermost first."""
    names, coro = [], task.get_coro()  # type: ignore[attr-defined]
    while asyncio.iscoroutine(coro):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


async def test_a_parked_flow_holds_few_frames_and_no_store_task(tmp_path: Path) -> None:
    # Every frame and task of a parked flow is multiplied by the flows parked at once.
    async with world(tmp_path, webhooks=True, processing_delay=10.0) as w:
        w.sandbox.add_client("client")
        started: list[str] = []

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            started.append(coro.__qualname__)
            return asyncio.Task(coro, loop=loop, **kw)

        asyncio.get_running_loop().set_task_factory(factory)
        run = asyncio.ensure_future(w.flow("client").run())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if _stack(run) == PARKED:
                break
        # Down to the waiter's loop, which sleeps on its mailbox's future (no frame).
        assert _stack(run) == PARKED
        # The in-memory store's calls never suspend: no task of their own to see them through.
        assert [name for name in started if "Store." in name] == []
        asyncio.get_running_loop().set_task_factory(None)
        while not run.done():
            await asyncio.sleep(0.01)
            w.clock.advance(10.0)
        assert run.result().outcome is FlowOutcome.SIGNED


def _flow(folder: str | Path, language: str | None = None) -> SignatureFlow:
    return SignatureFlow(object(), signer=object(), download_dir=folder, language=language)  # type: ignore[arg-type]


def test_flows_with_the_same_options_share_them_and_the_callers_folder(tmp_path: Path) -> None:
    for n in range(300):  # a folder per flow first: only the oldest kinds make room
        _flow(tmp_path / str(n))
    folder = tmp_path / "signed"
    one, two, other = _flow(folder, "en"), _flow(folder, "en"), _flow(folder, "de")
    assert one.options is two.options
    assert one.options.download_dir is folder
    assert other.options is not one.options
    assert other.options.language == "de"
    for n in range(300):  # the kind in use stays while others come and go
        _flow(tmp_path / f"more-{n}")
        assert _flow(folder, "en").options is one.options
    assert _flow("x").options.download_dir == Path("x")
