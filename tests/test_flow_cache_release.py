"""A finished flow leaves nothing of its own in a long-lived client's caches.

One client serves thousands of flows; the prepared status reads and parsed URLs it keeps
per signature must go when the flow ends (signed, declined, failed, cancelled or after
restarts), not stay until the caps evict them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import World, world

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    FlowEvent,
    FlowEventKind,
    FlowOutcome,
    HybridWaiter,
    KYCRequiredError,
    QESClient,
    Status,
    WebhookDispatcher,
    WebhookEvent,
)
from qes_async.sandbox import IdentityCase

FLOWS = 25


def _signature_paths(client: QESClient) -> list[str]:
    """The cached URL paths that belong to a signature (token and create have none)."""
    return [path for path in client._transport.transport._urls if "/signatures/" in path]


def _assert_nothing_kept(w: World, signature_ids: list[str]) -> None:
    client = w.client
    assert signature_ids  # the flows did reach the service
    assert len(client._status_requests) == 0, sorted(client._status_requests)
    assert _signature_paths(client) == []
    # Only the paths that no signature owns stay: the token and the create call.
    assert len(client._transport.transport._urls) <= 2, sorted(client._transport.transport._urls)


async def test_sequential_signed_flows_leave_no_cache_entry(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        signature_ids = []
        for _ in range(FLOWS):
            result = await w.flow().run()
            assert result.outcome is FlowOutcome.SIGNED
            assert result.signature_id is not None
            signature_ids.append(result.signature_id)
        assert len(set(signature_ids)) == FLOWS
        _assert_nothing_kept(w, signature_ids)


async def test_the_caches_fill_while_a_flow_runs_and_empty_when_it_ends(
    tmp_path: Path,
) -> None:
    """The release happens at the end of run(), not because nothing is cached at all."""
    seen: list[tuple[int, int]] = []
    async with world(tmp_path) as w:

        def during(event: FlowEvent) -> None:
            if event.kind is FlowEventKind.FINISHED:
                seen.append((len(w.client._status_requests), len(_signature_paths(w.client))))

        result = await w.flow(on_event=during).run()
        assert result.signature_id is not None
        assert len(seen) == 1
        assert seen[0][0] == 1  # the status read
        assert seen[0][1] >= 5  # uploads, details, approval, confirmation, download...
        _assert_nothing_kept(w, [result.signature_id])


async def test_declined_flows_leave_no_cache_entry(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        signature_ids = []
        for _ in range(5):
            result = await w.flow(signer=w.signer(approve=False)).run()
            assert result.outcome is FlowOutcome.DECLINED
            assert result.signature_id is not None
            signature_ids.append(result.signature_id)
        _assert_nothing_kept(w, signature_ids)


async def test_failed_flows_leave_no_cache_entry(tmp_path: Path) -> None:
    case = IdentityCase(kyc_fail_at="approval")
    async with world(tmp_path, {"client-1": case}) as w:
        signature_ids = []
        for _ in range(5):
            flow = w.flow()
            with pytest.raises(KYCRequiredError):
                await flow.run()
            assert flow.signature_id is not None
            signature_ids.append(flow.signature_id)
        _assert_nothing_kept(w, signature_ids)


async def test_every_generation_of_a_restarted_flow_is_released(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await w.flow(signer=w.signer(wrong=3)).run()  # too many attempts: restart
        assert result.outcome is FlowOutcome.SIGNED
        ids = [g.signature_id for g in result.generations]
        assert len(ids) == 2
        assert all(ids)
        _assert_nothing_kept(w, [i for i in ids if i])


async def test_a_cancelled_flow_leaves_no_cache_entry(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        asked = asyncio.Event()

        async def stalling(request: ConsentRequest) -> bool:
            asked.set()
            await asyncio.Event().wait()  # never answers: the run is cancelled here
            return True

        signer = CallbackSigner(consent=stalling, passcode=lambda request: "000000")
        flow = w.flow(signer=signer)
        task = asyncio.ensure_future(flow.run())
        await asyncio.wait_for(asked.wait(), 5)
        assert len(w.client._status_requests) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert flow.signature_id is not None
        _assert_nothing_kept(w, [flow.signature_id])


async def test_webhook_events_kept_for_a_finished_flow_are_dropped(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        dispatcher = WebhookDispatcher(clock=w.clock)
        waiter = HybridWaiter(w.client, dispatcher, clock=w.clock, safety_interval=1.0)

        def late_webhook(event: FlowEvent) -> None:
            # A webhook that lands after the last wait: nobody subscribes, so it is kept.
            if event.kind is FlowEventKind.FINISHED and event.signature_id:
                dispatcher.publish(WebhookEvent(event.signature_id, Status.SIGNED))

        for _ in range(5):
            result = await w.flow(waiter=waiter, on_event=late_webhook).run()
            assert result.outcome is FlowOutcome.SIGNED
        assert dispatcher.published == 5
        assert dispatcher.pending_count == 0
        assert dispatcher.subscriber_count == 0
        _assert_nothing_kept(w, [result.signature_id or ""])


async def test_a_forgotten_signature_is_read_again_as_before(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        result = await w.flow().run()
        sig = result.signature_id
        assert sig is not None
        assert len(w.client._status_requests) == 0
        report = await w.client.get_signature_status(sig)  # rebuilt on demand
        assert report.status is Status.SIGNED
        assert sig in w.client._status_requests
        w.client._forget(sig)
        w.client._forget(sig)  # twice, or for an unknown signature: nothing to do
        w.client._forget("no-such-signature", ["no-such-document"])
        assert len(w.client._status_requests) == 0
        assert _signature_paths(w.client) == []


async def test_the_sandbox_keeps_no_timer_of_a_finished_signature(tmp_path: Path) -> None:
    """A status change cancels the previous status's day-long waiting limit, so a long
    test run (or the leak benchmark) does not hold every signature for a fake day."""
    async with world(tmp_path) as w:
        for _ in range(10):
            result = await w.flow().run()
            assert result.outcome is FlowOutcome.SIGNED
        assert w.clock.pending_timers == 0
        sig = w.sandbox.signature(result.signature_id or "")
        assert sig.timers == []


async def test_an_inbox_forgets_the_asking_again_marker_of_a_finished_flow(
    tmp_path: Path,
) -> None:
    """A wrong passcode leaves a marker for the next ask; a run that ends before asking
    again (here: the store refuses the checkpoint after the wrong passcode) drops it."""
    from qes_async import MemoryFlowStore, PasscodeRequest, SignerInbox

    class FailingStore(MemoryFlowStore):
        saves_left: int | None = None  # once set, saves that still succeed

        async def save(self, *args: Any, **kw: Any) -> int:
            if self.saves_left is not None:
                if self.saves_left == 0:
                    raise OSError("disk full")
                self.saves_left -= 1
            return await super().save(*args, **kw)

    async with world(tmp_path) as w:
        inbox = SignerInbox(clock=w.clock, answer_timeout=0.05)
        store = FailingStore(clock=w.clock)
        flow = w.flow(signer=inbox, store=store)
        task = asyncio.ensure_future(flow.run())

        async def asked(kind: type) -> None:
            while not isinstance(inbox.pending(flow.flow_id), kind):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asked(ConsentRequest), 5)
        await inbox.submit_consent(flow.flow_id, True)
        await asyncio.wait_for(asked(PasscodeRequest), 5)
        # The in-flight mark is saved, the checkpoint after the wrong passcode is not.
        store.saves_left = 1
        await inbox.submit_passcode(flow.flow_id, "000000")
        with pytest.raises(OSError, match="disk full"):
            await task
        assert flow.flow_id not in inbox._asking_again
        assert len(w.client._status_requests) == 0
