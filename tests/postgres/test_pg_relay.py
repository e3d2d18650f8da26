"""The webhook relay and the signer hand-off between workers, on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from frame_locals import leaks, sdk_frame_locals
from pg_cluster import pg_dsn, pg_prefix

from qes_async import (
    AnswerKind,
    PasscodeRequest,
    SignerAnswer,
    SignerInbox,
    Status,
    WebhookDispatcher,
    WebhookEvent,
)
from qes_async.postgres import Listener, PostgresRelay, SignerRelay, migrate

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = pytest.mark.postgres
AUTH = {"Authorization": "Basic " + base64.b64encode(b"fourthline:pw-123456").decode()}


class Node:
    """One worker's relay pieces: a pool, a listener, a dispatcher, an inbox."""

    def __init__(self, pool: asyncpg.Pool, listener: Listener, prefix: str, **kw: float) -> None:
        self.dispatcher = WebhookDispatcher()
        self.relay = PostgresRelay(
            pool, listener, self.dispatcher, prefix=prefix, poll_interval=kw.get("poll", 30.0)
        )
        self.listener = listener
        self.inbox = SignerInbox(answer_timeout=5.0)
        self.driving: set[str] = set()
        self.signer = SignerRelay(
            pool,
            listener,
            self.inbox,
            drives=self.driving.__contains__,
            worker_id=f"w{id(self)}",
            prefix=prefix,
            claim_timeout=kw.get("claim", 1.0),
            poll_interval=30.0,
        )


@asynccontextmanager
async def node(dsn: str, prefix: str, **kw: float) -> AsyncIterator[Node]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    await migrate(pool, prefix)
    listener = Listener(dsn, reconnect_delay=0.05, check_interval=0.2)
    n = Node(pool, listener, prefix, **kw)
    await n.relay.start()
    await listener.start()
    try:
        yield n
    finally:
        await n.signer.close()
        await n.relay.close()
        await listener.close()
        await pool.close()


def _event(signature_id: str, status: str = "pending") -> WebhookEvent:
    return WebhookEvent(signature_id=signature_id, status=Status(status), status_code=200)


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_an_event_recorded_anywhere_wakes_the_waiter_on_another_worker(
    pg_dsn: str, pg_prefix: str
) -> None:
    async with node(pg_dsn, pg_prefix) as a, node(pg_dsn, pg_prefix) as b:
        with b.dispatcher.subscribe("sig-1") as subscription:
            await a.relay.record(_event("sig-1", "user_consent_required"))
            until = b.dispatcher.clock.time() + 5
            woke = await asyncio.wait_for(subscription.wait(until), 5)
            assert woke is True
            assert [e.status for e in subscription.drain()] == [Status.USER_CONSENT_REQUIRED]
        # The recorder hears its own NOTIFY too, but nothing orders it against b's.
        # The poll is 30 s, so within 5 s only the NOTIFY can have delivered either.
        await _until(lambda: a.relay.relayed == 1)
        assert (a.relay.relayed, b.relay.relayed) == (1, 1)


async def test_events_before_a_worker_started_are_not_replayed(pg_dsn: str, pg_prefix: str) -> None:
    async with node(pg_dsn, pg_prefix) as a:
        await a.relay.record(_event("old"))
        await _until(lambda: a.relay.relayed == 1)
        async with node(pg_dsn, pg_prefix) as b:
            await a.relay.record(_event("new"))
            await _until(lambda: b.relay.relayed == 1)
            await asyncio.sleep(0.1)
            assert b.relay.relayed == 1
            assert b.dispatcher.pending_count == 1


async def test_a_worker_that_reconnects_reads_what_it_missed(pg_dsn: str, pg_prefix: str) -> None:
    async with node(pg_dsn, pg_prefix) as a, node(pg_dsn, pg_prefix) as b:
        admin = await asyncpg.connect(pg_dsn)
        try:
            pid = b.listener.backend_pid
            before = b.listener.connections
            # Kill b's listening session, and record while it is down.
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
            await _until(lambda: not b.listener.connected.is_set())
            for n in range(3):
                await a.relay.record(_event(f"missed-{n}"))
            await b.listener.wait_reconnected(before, timeout=5)
        finally:
            await admin.close()
        await _until(lambda: b.relay.relayed == 3)
        assert b.listener.connections == before + 1
        assert b.listener.backend_pid != pid
        assert b.dispatcher.pending_count == 3  # missed-0..2, kept for their waiters


async def test_recorded_events_keep_their_fields(pg_dsn: str, pg_prefix: str) -> None:
    async with node(pg_dsn, pg_prefix) as a:
        sent = WebhookEvent("sig-9", Status("brand_new_status"), 422, (), received_at=12.5)
        with a.dispatcher.subscribe("sig-9") as subscription:
            await a.relay.record(sent)
            await _until(lambda: subscription.has_events)
            (got,) = subscription.drain()
    assert (got, got.received_at) == (sent, 12.5)


async def _ask_passcode(inbox: SignerInbox, flow_id: str, right: str, tries: int) -> list[str]:
    """A flow's side: ask for the passcode until it is right, acknowledging each try."""
    seen = []
    for attempt in range(tries):
        request = PasscodeRequest(flow_id, "sig", 1, deadline=1e12, attempts_left=None)
        value = await inbox.passcode(request)
        seen.append(value)
        if value == right:
            await inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
            break
        left = tries - attempt - 1
        await inbox.acknowledge(request, SignerAnswer(AnswerKind.WRONG_PASSCODE, left))
    return seen


async def test_passcode_submitted_to_another_worker_gets_the_drivers_answer(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("482913", "000111")
    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f1")
        asking = asyncio.create_task(_ask_passcode(driver.inbox, "f1", "482913", 3))
        await _until(lambda: driver.inbox.pending("f1") is not None)
        wrong = await web.signer.submit_passcode("f1", "000111")
        right = await web.signer.submit_passcode("f1", "482913")
        assert await asking == ["000111", "482913"]
        rows = await web.signer.pool.fetchval(f"SELECT count(*) FROM {pg_prefix}signer")
    assert wrong == SignerAnswer(AnswerKind.WRONG_PASSCODE, 2)
    assert right == SignerAnswer(AnswerKind.ACCEPTED)
    assert rows == 0  # answered submissions leave nothing behind
    assert driver.signer.served == 2


async def test_consent_to_another_worker_reaches_the_flow(pg_dsn: str, pg_prefix: str) -> None:
    from qes_async import ConsentRequest

    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f2")
        request = ConsentRequest("f2", "sig", 1, (), (), deadline=1e12)
        asking = asyncio.create_task(driver.inbox.consent(request))
        await _until(lambda: driver.inbox.pending("f2") is not None)
        submitting = asyncio.create_task(web.signer.submit_consent("f2", True))
        assert await asking is True
        await driver.inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
        assert await submitting == SignerAnswer(AnswerKind.ACCEPTED)


async def test_an_expired_question_answers_expired_across_workers(
    pg_dsn: str, pg_prefix: str
) -> None:
    from qes_async import ConsentRequest

    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f3")
        request = ConsentRequest("f3", "sig", 1, (), (), deadline=1.0)  # long past
        asking = asyncio.create_task(driver.inbox.consent(request))
        await _until(lambda: driver.inbox.pending("f3") is not None)
        assert await web.signer.submit_consent("f3", True) == SignerAnswer(AnswerKind.EXPIRED)
        asking.cancel()


async def test_a_flow_nobody_drives_answers_no_such_flow_and_leaves_no_secret(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("777888")
    async with node(pg_dsn, pg_prefix, claim=0.3) as web:
        answer = await web.signer.submit_passcode("ghost", "777888")
        rows = await web.signer.pool.fetchval(f"SELECT count(*) FROM {pg_prefix}signer")
    assert answer == SignerAnswer(AnswerKind.NO_SUCH_FLOW)
    assert rows == 0


async def test_webhook_route_answers_only_after_recording(pg_dsn: str, pg_prefix: str) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from qes_async.webhooks import BasicAuth, WebhookReceiver

    async with node(pg_dsn, pg_prefix) as a:
        receiver = WebhookReceiver(a.relay.recorder, BasicAuth("fourthline", "pw-123456"))
        app = web.Application()
        app.add_routes(a.relay.aiohttp_routes(receiver))
        async with TestClient(TestServer(app)) as http:
            resp = await http.post(
                "/fourthline/qes/sig-5",
                json={"signatureId": "sig-5", "status": "signed"},
                headers=AUTH,
            )
            assert resp.status == 204
            stored = await a.relay.pool.fetch(
                f"SELECT signature_id, body->>'status' FROM {pg_prefix}events"
            )
            assert [tuple(r) for r in stored] == [("sig-5", "signed")]
            await a.relay.pool.execute(f"DROP TABLE {pg_prefix}events")
            resp = await http.post(
                "/fourthline/qes/sig-6",
                json={"signatureId": "sig-6", "status": "signed"},
                headers=AUTH,
            )
            assert resp.status == 503


async def _shown(relay: SignerRelay, flow_id: str, check: Callable[[object], bool]) -> object:
    """Poll another worker's view of a flow's question until ``check`` holds (5 s)."""
    for _ in range(500):
        shown = await relay.pending(flow_id)
        if check(shown):
            return shown
        await asyncio.sleep(0.01)
    raise AssertionError(f"the question of {flow_id} never showed as expected")


async def test_a_question_asked_on_one_worker_shows_on_every_worker(
    pg_dsn: str, pg_prefix: str
) -> None:
    from qes_async import ConsentRequest, DocumentInfo, LegalCondition

    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f5")
        consent = ConsentRequest(
            "f5",
            "sig",
            1,
            (DocumentInfo("doc-1", "loan.pdf", "Loan contract", "ab" * 32),),
            (LegalCondition("tc", 3, "QTSP terms", "https://example.com/tc"),),
            deadline=1e12,
            masked_mobile_number="+31******678",
        )

        async def flow() -> None:
            assert await driver.inbox.consent(consent) is True
            await driver.inbox.acknowledge(consent, SignerAnswer(AnswerKind.ACCEPTED))
            left: int | None = None
            while True:
                request = PasscodeRequest("f5", "sig", 1, deadline=1e12, attempts_left=left)
                if await driver.inbox.passcode(request) == "482913":
                    await driver.inbox.acknowledge(request, SignerAnswer(AnswerKind.ACCEPTED))
                    return
                left = 2 if left is None else left - 1
                answer = SignerAnswer(AnswerKind.WRONG_PASSCODE, left)
                await driver.inbox.acknowledge(request, answer)

        asking = asyncio.create_task(flow())
        assert await _shown(web.signer, "f5", lambda r: r is not None) == consent
        assert await driver.signer.pending("f5") == consent  # the driver reads its inbox
        assert await web.signer.submit_consent("f5", True) == SignerAnswer(AnswerKind.ACCEPTED)
        shown = await _shown(web.signer, "f5", lambda r: isinstance(r, PasscodeRequest))
        assert shown == PasscodeRequest("f5", "sig", 1, deadline=1e12, attempts_left=None)
        await web.signer.submit_passcode("f5", "000111")
        shown = await _shown(web.signer, "f5", lambda r: getattr(r, "attempts_left", 0) == 2)
        assert "000111" not in repr(shown)
        await web.signer.submit_passcode("f5", "482913")
        await asking
        assert await _shown(web.signer, "f5", lambda r: r is None) is None
        rows = await web.signer.pool.fetchval(f"SELECT count(*) FROM {pg_prefix}asks")
        assert rows == 0  # an answered question leaves nothing behind


async def test_a_question_shows_only_while_its_worker_holds_the_lease(
    pg_dsn: str, pg_prefix: str
) -> None:
    import time

    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f6")
        pool = web.signer.pool
        await pool.execute(
            f"INSERT INTO {pg_prefix}flows (flow_id, version, data, updated_at, lease_owner,"
            " lease_token, lease_expires) VALUES ('f6', 1, '{}', 0, $1, 1, $2)",
            f"{driver.signer.worker_id}/run-1",  # a Worker's flows lease as "worker/run"
            time.time() + 60,
        )
        asking = asyncio.create_task(
            driver.inbox.passcode(PasscodeRequest("f6", "sig", 1, deadline=1e12))
        )
        await _shown(web.signer, "f6", lambda r: r is not None)
        # The driver dies: its lease runs out, and its question must not be shown.
        await pool.execute(f"UPDATE {pg_prefix}flows SET lease_expires = 0")
        assert await web.signer.pending("f6") is None
        # Another worker took the flow over: still not the dead worker's question, even
        # when that worker's id starts with the dead one's.
        await pool.execute(
            f"UPDATE {pg_prefix}flows SET lease_owner = $1, lease_expires = $2",
            f"{driver.signer.worker_id}2/run-1",
            time.time() + 60,
        )
        assert await web.signer.pending("f6") is None
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking


async def test_questions_left_by_a_dead_worker_are_pruned_after_their_deadline(
    pg_dsn: str, pg_prefix: str
) -> None:
    import time

    async with node(pg_dsn, pg_prefix) as web:
        pool = web.signer.pool
        now = time.time()
        for flow_id, deadline in (("old", now - 120), ("recent", now - 10), ("open", now + 60)):
            await pool.execute(
                f"INSERT INTO {pg_prefix}asks (flow_id, worker_id, kind, request, deadline)"
                " VALUES ($1, 'dead-worker', 'passcode', '{}', $2)",
                flow_id,
                deadline,
            )
        assert await web.signer.prune_questions() == 1
        left = await pool.fetch(f"SELECT flow_id FROM {pg_prefix}asks ORDER BY flow_id")
        assert [r["flow_id"] for r in left] == ["open", "recent"]


async def test_a_cancelled_submission_leaves_no_passcode_behind(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("551177")
    async with node(pg_dsn, pg_prefix, claim=30.0) as web:
        pool = web.signer.pool
        query = f"SELECT count(*) FROM {pg_prefix}signer"
        submitting = asyncio.create_task(web.signer.submit_passcode("nobody-drives", "551177"))
        for _ in range(500):
            if await pool.fetchval(query) == 1:
                break
            await asyncio.sleep(0.01)
        submitting.cancel()  # the page's client went away before any worker claimed it
        with pytest.raises(asyncio.CancelledError):
            await submitting
        assert await pool.fetchval(query) == 0


async def test_hostile_webhooks_never_reach_postgresql_as_a_refused_value(
    pg_dsn: str, pg_prefix: str
) -> None:
    """A NUL in the id is 404 at the receiver; a NUL or a lone surrogate in a kept string is
    stored as U+FFFD: neither becomes a 503 that Fourthline would retry for ever."""
    import json

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from qes_async.webhooks import BasicAuth, WebhookReceiver

    hostile = {"status": "error", "errors": [{"code": "c\x00", "message": "m\ud800"}]}
    content = json.dumps(hostile).encode()  # escaped: \u0000 and \ud800 on the wire
    headers = {**AUTH, "Content-Type": "application/json"}
    async with node(pg_dsn, pg_prefix) as a:
        receiver = WebhookReceiver(a.relay.recorder, BasicAuth("fourthline", "pw-123456"))
        app = web.Application()
        app.add_routes(a.relay.aiohttp_routes(receiver))
        async with TestClient(TestServer(app)) as http:
            resp = await http.post("/fourthline/qes/a%00b", data=content, headers=headers)
            assert resp.status == 404
            resp = await http.post("/fourthline/qes/sig-7", data=content, headers=headers)
            assert resp.status == 204
            stored = await a.relay.pool.fetch(
                f"SELECT signature_id, body->'errors'->0->>'code',"
                f" body->'errors'->0->>'message' FROM {pg_prefix}events"
            )
    assert [tuple(r) for r in stored] == [("sig-7", "c\ufffd", "m\ufffd")]


async def _leave_submission(pool: asyncpg.Pool, prefix: str, flow_id: str, age: float) -> None:
    """A passcode submitted ``age`` seconds ago by a worker that died before any claim."""
    await pool.execute(
        f"INSERT INTO {prefix}signer (flow_id, kind, value, recorded_at)"
        " VALUES ($1, 'passcode', '424242', now() - make_interval(secs => $2))",
        flow_id,
        age,
    )


async def _flows_left(pool: asyncpg.Pool, prefix: str) -> list[str]:
    rows = await pool.fetch(f"SELECT flow_id FROM {prefix}signer ORDER BY flow_id")
    return [r["flow_id"] for r in rows]


async def test_submissions_left_by_a_dead_worker_are_pruned_after_two_hours(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("424242")
    async with node(pg_dsn, pg_prefix) as web:
        pool = web.signer.pool
        await _leave_submission(pool, pg_prefix, "stale", 2 * 3600 + 60)
        await _leave_submission(pool, pg_prefix, "young", 2 * 3600 - 60)
        assert await web.signer.prune_submissions() == 1
        assert await _flows_left(pool, pg_prefix) == ["young"]


async def test_the_submission_max_age_is_configurable(pg_dsn: str, pg_prefix: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await migrate(pool, pg_prefix)
        listener = Listener(pg_dsn)
        relay = SignerRelay(
            pool,
            listener,
            SignerInbox(),
            drives=lambda _: False,
            worker_id="w",
            prefix=pg_prefix,
            submission_max_age=60.0,
        )
        await _leave_submission(pool, pg_prefix, "stale", 120)
        await _leave_submission(pool, pg_prefix, "young", 30)
        assert await relay.prune_submissions() == 1
        assert await _flows_left(pool, pg_prefix) == ["young"]
    finally:
        await pool.close()


@pytest.mark.parametrize("age", [0.0, -1.0, float("inf"), float("nan")])
def test_a_submission_max_age_that_is_not_a_positive_duration_is_refused(age: float) -> None:
    from qes_async import InvalidInputError

    with pytest.raises(InvalidInputError, match="submission_max_age"):
        SignerRelay(
            None,
            Listener("postgresql://unused"),
            SignerInbox(),
            drives=lambda _: False,
            worker_id="w",
            submission_max_age=age,
        )


async def test_each_submission_prunes_the_stale_ones(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("424242")
    async with node(pg_dsn, pg_prefix, claim=30.0) as web:
        pool = web.signer.pool
        await _leave_submission(pool, pg_prefix, "stale", 3 * 3600)
        submitting = asyncio.create_task(web.signer.submit_passcode("nobody-drives", "135790"))
        for _ in range(500):
            if "nobody-drives" in await _flows_left(pool, pg_prefix):
                break
            await asyncio.sleep(0.01)
        assert await _flows_left(pool, pg_prefix) == ["nobody-drives"]
        submitting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await submitting


async def test_the_safety_poll_prunes_stale_submissions(pg_dsn: str, pg_prefix: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    relay = None
    try:
        await migrate(pool, pg_prefix)
        relay = SignerRelay(
            pool,
            Listener(pg_dsn),
            SignerInbox(),
            drives=lambda _: False,
            worker_id="w",
            prefix=pg_prefix,
            poll_interval=0.002,  # prunes every 60th poll: within ~0.2 s
        )
        await _leave_submission(pool, pg_prefix, "stale", 3 * 3600)
        await _leave_submission(pool, pg_prefix, "young", 10)
        await relay.start()
        for _ in range(300):
            if await _flows_left(pool, pg_prefix) == ["young"]:
                break
            await asyncio.sleep(0.01)
        assert await _flows_left(pool, pg_prefix) == ["young"]
    finally:
        if relay is not None:
            await relay.close()
        await pool.close()


async def test_no_frame_of_a_cancelled_relayed_submission_holds_the_passcode(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    secrets_registry("640519")
    async with node(pg_dsn, pg_prefix, claim=30.0) as web:
        query = f"SELECT count(*) FROM {pg_prefix}signer"
        submitting = asyncio.create_task(web.signer.submit_passcode("nobody-drives", "640519"))
        for _ in range(500):
            if await web.signer.pool.fetchval(query) == 1:
                break
            await asyncio.sleep(0.01)
        submitting.cancel()  # while it waits for a claim, the value stored in the table
        with pytest.raises(asyncio.CancelledError) as info:
            await submitting
    assert {"submit_passcode", "_submit"} <= {f for f, _, _ in sdk_frame_locals(info.value)}
    assert leaks(info.value, "640519") == []


async def test_no_frame_of_the_driver_handing_a_relayed_passcode_over_holds_it(
    pg_dsn: str, pg_prefix: str, secrets_registry: Callable[..., None]
) -> None:
    """The driving worker reads the submission back (a record whose repr shows its value)
    and hands it to its inbox; a failure there finds neither in its frames."""
    secrets_registry("305718")
    failures: list[BaseException] = []

    async def failing(flow_id: str, passcode: object) -> SignerAnswer:
        failure = RuntimeError("the inbox failed")
        failures.append(failure)
        raise failure

    async with node(pg_dsn, pg_prefix) as driver, node(pg_dsn, pg_prefix) as web:
        driver.driving.add("f1")
        asking = asyncio.create_task(driver.inbox.passcode(PasscodeRequest("f1", "sig", 1, 1e12)))
        await _until(lambda: driver.inbox.pending("f1") is not None)
        driver.inbox.submit_passcode = failing  # type: ignore[method-assign]
        submitting = asyncio.create_task(web.signer.submit_passcode("f1", "305718"))
        await _until(lambda: bool(failures))
        submitting.cancel()
        asking.cancel()
        await asyncio.gather(submitting, asking, return_exceptions=True)
    assert {"_serve", "_hand_over"} <= {f for f, _, _ in sdk_frame_locals(failures[0])}
    assert leaks(failures[0], "305718") == []
