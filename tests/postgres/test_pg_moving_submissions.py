"""Submissions for a flow whose driver is gone: kept, answered MOVING at once, used next.

Leases are read on an injected clock, so "the lease ran out" is set by the test, not waited
for.  No test asserts a timing: each asserts the kind of answer and where the answer went.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from pg_cluster import pg_dsn, pg_prefix

from qes_async import FakeClock, SignerInbox
from qes_async._signers.signer import AnswerKind, ConsentRequest, PasscodeRequest, SignerAnswer
from qes_async.postgres import Listener, SignerRelay, migrate

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = pytest.mark.postgres
NOW = 1_000_000.0


class Node:
    """One worker's signer hand-off: a pool, a listener, an inbox, the flows it drives."""

    def __init__(self, pool: asyncpg.Pool, listener: Listener, prefix: str, name: str) -> None:
        self.clock = FakeClock(NOW, auto_advance=False)
        self.inbox = SignerInbox(answer_timeout=5.0, clock=self.clock)
        self.driving: set[str] = set()
        self.name = name
        self.signer = SignerRelay(
            pool,
            listener,
            self.inbox,
            drives=self.driving.__contains__,
            worker_id=name,
            prefix=prefix,
            claim_timeout=30.0,  # long: a stored flow never waits for it
            answer_within=0.3,
            retry_after=4.0,
            poll_interval=30.0,
            clock=self.clock,
        )


@asynccontextmanager
async def node(dsn: str, prefix: str, name: str) -> AsyncIterator[Node]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    await migrate(pool, prefix)
    listener = Listener(dsn, reconnect_delay=0.05, check_interval=0.2)
    n = Node(pool, listener, prefix, name)
    await listener.start()
    await n.signer.start()
    try:
        yield n
    finally:
        await n.signer.close()
        await listener.close()
        await pool.close()


async def _flow(
    pool: asyncpg.Pool, prefix: str, flow_id: str, owner: str | None, expires: float
) -> None:
    await pool.execute(
        f"INSERT INTO {prefix}flows (flow_id, version, data, updated_at, lease_owner,"
        " lease_token, lease_expires) VALUES ($1, 1, '{}', 0, $2, 1, $3)",
        flow_id,
        owner,
        expires,
    )


async def _rows(pool: asyncpg.Pool, prefix: str) -> list[tuple[str, bool, bool]]:
    rows = await pool.fetch(
        f"SELECT kind, kept, value IS NOT NULL AS has_value FROM {prefix}signer ORDER BY id"
    )
    return [(r["kind"], r["kept"], r["has_value"]) for r in rows]


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def _passcode_request(flow_id: str) -> PasscodeRequest:
    return PasscodeRequest(flow_id, "sig", 1, deadline=NOW + 3600)


async def test_a_passcode_for_a_flow_whose_driver_died_is_kept_and_used_by_the_next_driver(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("482913")
    async with node(pg_dsn, pg_prefix, "web") as web, node(pg_dsn, pg_prefix, "next") as nxt:
        pool = web.signer.pool
        # Its driver died: its lease ran out (on the injected clock) and nobody took it yet.
        await _flow(pool, pg_prefix, "f1", "dead/run-1", NOW - 1)
        answer = await web.signer.submit_passcode("f1", "482913")
        assert answer == SignerAnswer(AnswerKind.MOVING, retry_after=4.0)
        assert await _rows(pool, pg_prefix) == [("passcode", True, True)]
        # The next driver takes the flow over; its flow asks again and gets the passcode.
        nxt.driving.add("f1")
        request = _passcode_request("f1")
        got = await asyncio.wait_for(nxt.inbox.passcode(request), 5)
        assert got == "482913"
        await nxt.inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
        await _until(lambda: nxt.signer.served == 1)
        assert await _rows(pool, pg_prefix) == []  # used: nothing (and no secret) is left


async def test_a_submission_the_driver_takes_before_its_flow_asks_again_waits_for_the_ask(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with node(pg_dsn, pg_prefix, "web") as web, node(pg_dsn, pg_prefix, "drv") as drv:
        pool = web.signer.pool
        # The new driver holds the lease and drives the flow, but its flow is still
        # re-reading the status after the takeover: it asks nothing yet.
        await _flow(pool, pg_prefix, "f2", "drv/run-2", NOW + 30)
        drv.driving.add("f2")
        answer = await web.signer.submit_consent("f2", True)
        assert answer.kind is AnswerKind.MOVING  # not no_such_flow: the flow exists
        assert answer.retry_after == pytest.approx(30 + 4.0)
        request = ConsentRequest("f2", "sig", 1, (), (), deadline=NOW + 3600)
        assert await asyncio.wait_for(drv.inbox.consent(request), 5) is True
        await drv.inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))


async def test_a_submission_on_the_driver_itself_while_its_flow_resyncs_is_kept(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with node(pg_dsn, pg_prefix, "drv") as drv:
        await _flow(drv.signer.pool, pg_prefix, "f3", "drv/run-3", NOW + 30)
        drv.driving.add("f3")
        answer = await drv.signer.submit_passcode("f3", "123456")
        assert answer.kind is AnswerKind.MOVING
        assert await asyncio.wait_for(drv.inbox.passcode(_passcode_request("f3")), 5) == "123456"


async def test_a_later_submission_replaces_a_kept_one(pg_dsn: str, pg_prefix: str) -> None:
    async with node(pg_dsn, pg_prefix, "web") as web, node(pg_dsn, pg_prefix, "next") as nxt:
        pool = web.signer.pool
        await _flow(pool, pg_prefix, "f4", None, 0)  # released: nobody drives it
        assert (await web.signer.submit_passcode("f4", "111111")).kind is AnswerKind.MOVING
        assert (await web.signer.submit_passcode("f4", "222222")).kind is AnswerKind.MOVING
        assert await _rows(pool, pg_prefix) == [("passcode", True, True)]
        nxt.driving.add("f4")
        assert await asyncio.wait_for(nxt.inbox.passcode(_passcode_request("f4")), 5) == "222222"


async def test_a_submission_whose_claimer_dies_answers_moving_not_a_long_wait(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with node(pg_dsn, pg_prefix, "web") as web:
        pool = web.signer.pool
        await _flow(pool, pg_prefix, "f5", "doomed/run-5", NOW + 30)
        submitting = asyncio.create_task(web.signer.submit_passcode("f5", "654321"))
        # The driving worker claims it (from its listening session) and dies before it
        # answers: its session ends with it.
        doomed = await asyncpg.connect(pg_dsn)
        for _ in range(500):
            claimed = await doomed.fetchval(
                f"UPDATE {pg_prefix}signer SET claimed_by = 'doomed', value = NULL,"
                " claimed_pid = pg_backend_pid() WHERE claimed_by IS NULL RETURNING id"
            )
            if claimed is not None:
                break
            await asyncio.sleep(0.01)
        await doomed.close()
        # The answer timeout is 10 s; the claimer's end is seen on the next 0.5 s poll.
        answer = await asyncio.wait_for(submitting, 5)
        assert answer.kind is AnswerKind.MOVING
        assert await _rows(pool, pg_prefix) == []


async def test_a_submission_for_a_finished_flow_answers_no_such_flow_and_stores_nothing(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("909090")
    async with node(pg_dsn, pg_prefix, "web") as web:
        pool = web.signer.pool
        await _flow(pool, pg_prefix, "f6", None, 0)
        await pool.execute(f"UPDATE {pg_prefix}flows SET finished = true")
        answer = await asyncio.wait_for(web.signer.submit_passcode("f6", "909090"), 5)
        assert answer == SignerAnswer(AnswerKind.NO_SUCH_FLOW)
        assert await _rows(pool, pg_prefix) == []


async def test_kept_submissions_of_a_finished_flow_are_pruned(pg_dsn: str, pg_prefix: str) -> None:
    async with node(pg_dsn, pg_prefix, "web") as web:
        pool = web.signer.pool
        await _flow(pool, pg_prefix, "f7", None, 0)
        await _flow(pool, pg_prefix, "f8", None, 0)
        assert (await web.signer.submit_passcode("f7", "121212")).kind is AnswerKind.MOVING
        assert (await web.signer.submit_passcode("f8", "343434")).kind is AnswerKind.MOVING
        await pool.execute(f"UPDATE {pg_prefix}flows SET finished = true WHERE flow_id = 'f7'")
        assert await web.signer.prune_submissions() == 1
        left = await pool.fetch(f"SELECT flow_id FROM {pg_prefix}signer")
        assert [r["flow_id"] for r in left] == ["f8"]


async def test_a_kept_answer_is_never_given_to_a_later_workflows_question(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with node(pg_dsn, pg_prefix, "web") as web, node(pg_dsn, pg_prefix, "next") as nxt:
        pool = web.signer.pool
        await _flow(pool, pg_prefix, "f9", None, 0)
        # The page showed generation 1's passcode question, then its driver died.
        await pool.execute(
            f"INSERT INTO {pg_prefix}asks (flow_id, worker_id, kind, request, deadline)"
            " VALUES ('f9', 'dead', 'passcode', '{\"generation\": 1}', $1)",
            NOW + 60,
        )
        assert (await web.signer.submit_passcode("f9", "111111")).kind is AnswerKind.MOVING
        # The next driver had to start a new workflow: its SMS is another passcode.
        nxt.driving.add("f9")
        asking = asyncio.create_task(
            nxt.inbox.passcode(PasscodeRequest("f9", "sig-2", 2, deadline=NOW + 3600))
        )
        await _until(lambda: nxt.signer.served == 1)
        assert not asking.done()  # the old passcode was not given to it
        assert await _rows(pool, pg_prefix) == []
        asking.cancel()
