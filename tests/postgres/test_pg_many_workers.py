"""Three worker processes and a webhook receiver process on one PostgreSQL and one sandbox.

``QES_MANY_WORKERS_FLOWS=1000`` runs 1,000 flows per worker instead of 100 (opt-in: a few
minutes). Either way the test prints flows per second, the database statements per flow
(counted by the server, pg_stat_statements, for the workers' own role only) and the
takeover time after the SIGKILL.

Webhooks go to a random process; one worker is SIGKILLed mid-run and the others finish its
flows; the sandbox's request log shows one workflow, approval and confirmation per
generation; consent and passcode for two flows are shown by, and submitted to, workers that
do not drive them, and get the driver's answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from pg_cluster import pg_dsn, pg_prefix

from qes_async import make_pdf
from qes_async.postgres import migrate
from qes_async.sandbox import IdentityCase, SandboxServer

__all__ = ["pg_dsn", "pg_prefix"]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FLOWS_PER_WORKER = int(os.environ.get("QES_MANY_WORKERS_FLOWS", "100"))
WORKER_ROLE = "qes_worker"
HUMANS = ("human-0", "human-1")
# Driven by w2, which dies while it waits for this human's passcode.
MOVED = "human-2"
LEASE_TTL = float(os.environ.get("QES_TEST_LEASE_TTL", "3"))  # worker_app.SETTINGS
SWEEP = 0.5
HERE = Path(__file__).parent


async def _spawn(
    name: str, args: list[str], max_flows: int, consent_delay: float = 0.0
) -> tuple[Any, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "worker_app.py"),
        name,
        *args,
        str(max_flows),
        str(consent_delay),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"READY "), line
    return proc, int(line.split()[1])


async def _balancer(
    ports: list[int], rng: random.Random
) -> tuple[web.AppRunner, str, Counter[int]]:
    """A load balancer for the sandbox's webhooks: each one goes to a random process."""
    session = aiohttp.ClientSession()
    hits: Counter[int] = Counter()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        for port in rng.sample(ports, len(ports)):  # a dead one is skipped, as an LB would
            try:
                url = f"http://127.0.0.1:{port}{request.path}"
                async with session.post(url, data=body, headers=headers) as resp:
                    hits[port] += 1
                    return web.Response(status=resp.status, body=await resp.read())
            except aiohttp.ClientError:
                continue
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    app.on_cleanup.append(lambda _app: session.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", hits


@pytest.mark.timeout(120 + 2 * FLOWS_PER_WORKER)  # 3x1000 takes minutes, not seconds
async def test_three_workers_and_a_receiver_finish_every_flow(
    pg_dsn: str, pg_prefix: str, tmp_path: Path
) -> None:
    pdf = tmp_path / "loan.pdf"
    pdf.write_bytes(make_pdf("Loan"))
    conn = await asyncpg.connect(pg_dsn)
    await migrate(conn, pg_prefix)
    worker_dsn = await _counted_dsn(conn, pg_dsn)
    total = 3 * FLOWS_PER_WORKER + 3
    rng = random.Random(9)
    procs: list[Any] = []
    ports: list[int] = []
    lb_runner, lb_url, hits = await _balancer(ports, rng)
    try:
        async with SandboxServer(
            processing_delay=0.05,
            seed=3,
            clients={"client-1": IdentityCase()},
            webhook_url=f"{lb_url}/fourthline/qes",
            webhook_basic=("fourthline", "hook-pass"),
        ) as sandbox:
            args = [worker_dsn, pg_prefix, sandbox.url, sandbox.client_id, sandbox.client_secret]
            args += [str(pdf), str(tmp_path)]
            for n in range(4):  # w0..w2 drive flows, "receiver" only receives
                name = f"w{n}" if n < 3 else "receiver"
                # w2's signer takes 5 s to consent: its flows are parked when it is killed
                limit = total if n < 3 else 0  # room to take over the dead one's flows
                proc, port = await _spawn(name, args, limit, 5.0 if n == 2 else 0)
                procs.append(proc)
                ports.append(port)
            async with aiohttp.ClientSession() as http:
                started_at = asyncio.get_running_loop().time()
                await _start_flows(http, ports)
                # w2 dies mid-run, once a few of its flows wait for its slow signer (its flows
                # run together and finish within a moment of each other, so waiting for some
                # of them to finish could miss the window)
                await _until_step(conn, pg_prefix, "consent", 5, "f-2-%", timeout=30 + total / 50)
                moved = [await _consent_then_passcode_asked(http, conn, pg_prefix, ports, MOVED)]
                killed_at = asyncio.get_running_loop().time()
                procs[2].send_signal(signal.SIGKILL)
                await procs[2].wait()
                # The human types the passcode while the driver is dead: kept, "one moment".
                moved.append(await _type_passcode(http, conn, pg_prefix, sandbox, ports, MOVED))
                orphans = await conn.fetchval(
                    f"SELECT count(*) FROM {pg_prefix}flows"
                    " WHERE NOT finished AND flow_id LIKE 'f-2-%'"
                )
                at_kill = await conn.fetch(
                    f"SELECT finished, count(*) FROM {pg_prefix}flows"
                    " WHERE flow_id LIKE 'f-2-%' GROUP BY finished"
                )
                print(f"\npasscode typed while its driver was dead: {moved[1]}")
                takeover, human_back = await _until_taken_over(
                    conn, pg_prefix, killed_at, timeout=30 + total / 50
                )
                print(
                    f"\ntakeover after SIGKILL: {takeover:.2f} s for all {orphans} flows,"
                    f" {human_back:.2f} s for the one a person waits on"
                    f" (bound lease_ttl + sweep_interval = {LEASE_TTL + SWEEP:.1f} s + a few)"
                )
                answers = [
                    await _be_human(http, conn, pg_prefix, sandbox, ports, f) for f in HUMANS
                ]
                await _until_finished(conn, pg_prefix, total, timeout=45 + total / 5)
                elapsed = asyncio.get_running_loop().time() - started_at
                statements = await _worker_statements(conn, worker_dsn != pg_dsn)
                if os.environ.get("QES_TAKEOVER_TRACE") and worker_dsn != pg_dsn:
                    top = await conn.fetch(
                        "SELECT calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q"
                        " FROM pg_stat_statements WHERE userid ="
                        " (SELECT oid FROM pg_roles WHERE rolname = $1) ORDER BY calls DESC"
                        " LIMIT 12",
                        WORKER_ROLE,
                    )
                    for r in top:
                        print(f"{r['calls']:8d} {r['q']}")
                print(
                    f"{total} flows on 3 workers (one SIGKILLed) in {elapsed:.1f} s:"
                    f" {total / elapsed:.1f} flows/s; database statements per flow"
                    f" (server-counted): "
                    + ("n/a" if statements is None else f"{statements / total:.1f}")
                )
                # A flow is finished in the database inside run(); its worker counts it
                # once run() returns, so read the counters once they have settled.
                stats = await _settled_stats(http, ports, 3 * FLOWS_PER_WORKER + 3, at_kill)
            rows = await conn.fetch(
                f"SELECT flow_id, data->>'step' AS step, data->'generations' AS gens"
                f" FROM {pg_prefix}flows"
            )
            log = list(sandbox.request_log)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        await lb_runner.cleanup()
        await conn.close()

    assert orphans > 0, at_kill  # the killed worker left flows behind, all finished:
    # the live workers' counters: every flow not finished by w2 before it died ended on one
    # of them, w2's unfinished ones by takeover; the receiver drives nothing
    finished_at_kill = sum(r["count"] for r in at_kill if r["finished"])
    assert [s["worker_id"] for s in stats] == ["w0", "w1", "receiver"]
    # Flows finished when w2 died were finished by w2, or (a loaded w2 renewing late) by
    # a live worker that took them over; a run stopped because its lease was lost counts
    # in leases_lost, not completed. Never is one flow counted twice.
    completed = sum(s["completed"] for s in stats)
    lost = sum(s["leases_lost"] for s in stats)
    assert total - finished_at_kill - lost <= completed <= total, (json.dumps(stats), at_kill)
    assert sum(s["taken_over"] for s in stats) >= orphans
    assert stats[2]["completed"] == stats[2]["running"] == 0
    assert all(s["running"] == 0 for s in stats)
    assert sum(s["submissions_served"] for s in stats) >= 3 * len(HUMANS)  # consent, 2 passcodes
    expected = {f"f-{n}-{i}" for n in range(3) for i in range(FLOWS_PER_WORKER)}
    expected |= {*HUMANS, MOVED}
    assert {r["flow_id"] for r in rows} == expected, [
        (r["flow_id"], r["step"]) for r in rows if r["flow_id"] not in expected
    ]
    assert Counter(r["step"] for r in rows) == {"signed": 3 * FLOWS_PER_WORKER + 3}
    # every process received webhooks (the killed one until it died)
    assert sorted(hits) == sorted(ports)
    assert min(hits.values()) > 0
    # The passcode typed while its driver was dead was kept, and the next driver used it
    # (the flow signed, confirmed once, below): answered moving ("one moment"), or
    # accepted when the next driver took the flow over within the second it waits.
    # (the consent, to a live but loaded driver, may be kept a moment just the same)
    assert [m["kind"] in ("moving", "accepted") for m in moved] == [True, True], moved
    if moved[1]["kind"] == "moving":
        assert 0 < moved[1]["retry_after"] <= LEASE_TTL + SWEEP + 1.0
    expected_answers = [
        {"kind": "accepted", "attempts_left": None, "retry_after": None},
        {"kind": "wrong_passcode", "attempts_left": 2, "retry_after": None},
        {"kind": "accepted", "attempts_left": None, "retry_after": None},
    ]
    for answer in answers:
        # each the driver's answer, or (a loaded driver) "moving" with a retry_after, its
        # effect then seen in the next question shown (attempts_left 2 after the wrong one)
        # and in the flow's end (signed, one refused confirmation: below)
        assert [
            got if got["kind"] != "moving" or not got["retry_after"] else want
            for got, want in zip(answer, expected_answers, strict=True)
        ] == expected_answers, answers
    processed = Counter(
        (r.route, r.signature_id) for r in log if r.processed and r.route is not None
    )
    signature_ids = [g["signature_id"] for r in rows for g in json.loads(r["gens"])]
    restarted = [
        (r["flow_id"], [(g["reason"], g["last_status"]) for g in json.loads(r["gens"])])
        for r in rows
        if len(json.loads(r["gens"])) > 1
    ]
    assert restarted == []  # no fault was injected: every flow signs in its first workflow
    owners: dict[str, list[str]] = {}
    for r in rows:
        for g in json.loads(r["gens"]):
            owners.setdefault(g["signature_id"], []).append(r["flow_id"])
    shared = {sid: flows for sid, flows in owners.items() if len(flows) > 1}
    assert shared == {}  # one workflow belongs to one flow
    assert len(signature_ids) == len(set(signature_ids)) == 3 * FLOWS_PER_WORKER + 3
    created = {r.signature_id for r in log if r.route == "create_workflow" and r.processed}
    assert set(signature_ids) <= created
    # A worker killed after sending create_workflow but before saving its answer leaves a
    # workflow no flow knows (the contract has no idempotency key): it is never used again.
    orphan_workflows = created - set(signature_ids)
    touched = {r.signature_id for r in log if r.route != "create_workflow" and r.processed}
    assert orphan_workflows & touched == set()
    assert len(orphan_workflows) <= FLOWS_PER_WORKER  # only the killed worker's flows can leave one
    accepted = Counter(
        (r.route, r.signature_id) for r in log if r.processed and r.route and r.status < 300
    )
    human_sigs = {json.loads(r["gens"])[-1]["signature_id"] for r in rows if r["flow_id"] in HUMANS}
    for sig in signature_ids:
        assert accepted[("approve_documents", sig)] == processed[("approve_documents", sig)] == 1
        assert accepted[("confirm_signature", sig)] == 1
        # a human's wrong passcode is one more (refused) confirmation, nobody else's
        assert processed[("confirm_signature", sig)] == (2 if sig in human_sigs else 1)


async def _start_flows(http: aiohttp.ClientSession, ports: list[int]) -> None:
    """Start every worker's flows: the humans' first, then the rest in chunks of 100 per
    worker every 2 s (at 1,000 per worker, as an app's traffic would, not in one burst
    that has a two-core machine's event loops miss their lease renewals)."""
    chunk = 100
    for start in range(0, FLOWS_PER_WORKER, chunk):
        for n in range(3):
            ids = [] if start else list(HUMANS) if n == 0 else [MOVED] if n == 2 else []
            ids += [f"f-{n}-{i}" for i in range(start, min(start + chunk, FLOWS_PER_WORKER))]
            async with http.post(f"http://127.0.0.1:{ports[n]}/start", json={"ids": ids}):
                pass
        if start + chunk < FLOWS_PER_WORKER:
            await asyncio.sleep(2.0)


async def _counted_dsn(conn: Any, dsn: str) -> str:
    """The workers' DSN, as a role of their own so that the server counts their statements
    apart from this test's; the DSN unchanged where that cannot be set up."""
    if "//postgres@" not in dsn:
        return dsn
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute(
            f"DO $$ BEGIN CREATE ROLE {WORKER_ROLE} LOGIN SUPERUSER;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        await conn.fetchval("SELECT pg_stat_statements_reset()")
    except asyncpg.PostgresError:
        return dsn  # a server without pg_stat_statements preloaded
    # Negative control: statements of this test's role are not the workers'.
    for _ in range(20):
        await conn.fetchval("SELECT 1")
    assert await _worker_statements(conn, True) == 0
    return dsn.replace("//postgres@", f"//{WORKER_ROLE}@")


async def _worker_statements(conn: Any, counted: bool) -> int | None:
    if not counted:
        return None
    calls = await conn.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = $1)",
        WORKER_ROLE,
    )
    return int(calls)


async def _until_taken_over(
    conn: Any, prefix: str, killed_at: float, timeout: float
) -> tuple[float, float]:
    """Seconds from the kill until every flow the dead worker left unfinished is held by a
    live worker (or has finished), and until the human's flow (MOVED) is."""
    loop = asyncio.get_running_loop()
    query = (
        f"SELECT count(*), count(*) FILTER (WHERE flow_id = $1) FROM {prefix}flows"
        " WHERE NOT finished AND (flow_id LIKE 'f-2-%' OR flow_id = $1)"
        " AND (lease_owner IS NULL OR lease_owner LIKE 'w2/%' OR lease_owner = 'w2')"
    )
    last, human = -1, None
    while True:
        left, human_left = await conn.fetchrow(query, MOVED)
        if human is None and human_left == 0:
            human = loop.time() - killed_at
        if left == 0:
            assert human is not None
            return loop.time() - killed_at, human
        if left != last and os.environ.get("QES_TAKEOVER_TRACE"):
            print(f"{loop.time() - killed_at:6.2f}s {left} left", flush=True)
            last = left
        assert loop.time() < killed_at + timeout, "the dead worker's flows were not taken over"
        await asyncio.sleep(0.02)


async def _consent_then_passcode_asked(
    http: aiohttp.ClientSession, conn: Any, prefix: str, ports: list[int], flow_id: str
) -> dict[str, Any]:
    """Consent for ``flow_id`` through w0 (it drives on w2), then wait for its passcode
    question to show."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30 + FLOWS_PER_WORKER / 10
    while True:
        async with http.get(f"http://127.0.0.1:{ports[0]}/pending/{flow_id}") as resp:
            shown = await resp.json()
        if shown["kind"] == "ConsentRequest":
            break
        assert loop.time() < end, shown
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{ports[0]}/consent/{flow_id}"
    async with http.post(url, json={"approve": True}) as resp:
        answer: dict[str, Any] = await resp.json()
    while True:
        async with http.get(f"http://127.0.0.1:{ports[0]}/pending/{flow_id}") as resp:
            shown = await resp.json()
        if shown["kind"] == "PasscodeRequest":
            return answer
        assert loop.time() < end, shown
        await asyncio.sleep(0.05)


async def _type_passcode(
    http: aiohttp.ClientSession,
    conn: Any,
    prefix: str,
    sandbox: SandboxServer,
    ports: list[int],
    flow_id: str,
) -> dict[str, Any]:
    data = await conn.fetchval(f"SELECT data FROM {prefix}flows WHERE flow_id = $1", flow_id)
    right = sandbox.latest_passcode(json.loads(data)["generations"][-1]["signature_id"])
    url = f"http://127.0.0.1:{ports[1]}/passcode/{flow_id}"
    async with http.post(url, json={"passcode": right}) as resp:
        answer: dict[str, Any] = await resp.json()
    return answer


async def _until_step(
    conn: Any, prefix: str, step: str, count: int, like: str, timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    query = f"SELECT count(*) FROM {prefix}flows WHERE data->>'step' = $1 AND flow_id LIKE $2"
    while (await conn.fetchval(query, step, like)) < count:
        assert loop.time() < end, f"fewer than {count} {like} flows reached {step} in time"
        await asyncio.sleep(0.05)


async def _until_finished(
    conn: Any, prefix: str, count: int, timeout: float, like: str = "%"
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        done = await conn.fetchval(
            f"SELECT count(*) FROM {prefix}flows WHERE finished AND flow_id LIKE $1", like
        )
        if done >= count:
            return
        if loop.time() >= end:
            stuck = await conn.fetch(
                f"SELECT flow_id, data->>'step' AS step, lease_owner, lease_expires"
                f" FROM {prefix}flows WHERE NOT finished AND flow_id LIKE $1 LIMIT 5",
                like,
            )
            raise AssertionError(f"only {done} of {count} flows finished in time: {stuck}")
        await asyncio.sleep(0.2)


async def _be_human(
    http: aiohttp.ClientSession,
    conn: Any,
    prefix: str,
    sandbox: SandboxServer,
    ports: list[int],
    flow_id: str,
) -> list[dict[str, Any]]:
    """Consent, a wrong passcode and the right one, each sent to a worker not driving it."""

    async def elsewhere() -> int:
        owner = await conn.fetchval(
            f"SELECT lease_owner FROM {prefix}flows WHERE flow_id = $1", flow_id
        )
        driver = int(owner[1]) if owner and owner[0] == "w" else -1
        live = [n for n in (0, 1, 3) if n != driver]  # w2 is dead
        return ports[random.choice(live)]

    async def asked(kind: str, attempts_left: int | None = None) -> dict[str, Any]:
        """Wait until a worker not driving the flow shows its question, as a page would."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while True:
            url = f"http://127.0.0.1:{await elsewhere()}/pending/{flow_id}"
            async with http.get(url) as resp:
                shown: dict[str, Any] = await resp.json()
            # (a loaded driver may lose the flow to another worker between the two reads)
            wanted = (shown["kind"], shown["attempts_left"]) == (kind, attempts_left)
            if wanted and not shown["driving"]:
                return shown
            assert loop.time() < end, shown
            await asyncio.sleep(0.05)

    async def submit(path: str, body: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while True:
            port = await elsewhere()
            async with http.post(f"http://127.0.0.1:{port}{path}", json=body) as resp:
                got: dict[str, Any] = await resp.json()
            # "moving": kept for the driver (a loaded one that took more than a second);
            # sent again, both could reach it (two wrong passcodes for one). The page
            # waits and reads the question again instead, as asked() does next.
            if got["kind"] in wanted or got["kind"] == "moving":
                return got
            assert loop.time() < end, got
            await asyncio.sleep(0.1)

    shown = await asked("ConsentRequest")
    assert shown["documents"] == 1
    assert shown["driving"] is False
    answers = [await submit(f"/consent/{flow_id}", {"approve": True}, {"accepted"})]
    right = None
    while right is None:  # the SMS goes out once the approval is processed
        data = await conn.fetchval(f"SELECT data FROM {prefix}flows WHERE flow_id = $1", flow_id)
        sig = json.loads(data)["generations"][-1]["signature_id"]
        try:
            right = sandbox.latest_passcode(sig)
        except LookupError:
            await asyncio.sleep(0.05)
    wrong = "000000" if right != "000000" else "111111"
    await asked("PasscodeRequest")
    answers.append(await submit(f"/passcode/{flow_id}", {"passcode": wrong}, {"wrong_passcode"}))
    await asked("PasscodeRequest", attempts_left=2)
    answers.append(await submit(f"/passcode/{flow_id}", {"passcode": right}, {"accepted"}))
    return answers


async def _settled_stats(
    http: aiohttp.ClientSession, ports: list[int], flows: int, at_kill: list[Any]
) -> list[dict[str, Any]]:
    """The live workers' stats, read again (for up to 10 s) until their completed counts
    reach what the database says finished on them; the caller still asserts the sum."""
    wanted = flows - sum(r["count"] for r in at_kill if r["finished"])
    end = asyncio.get_running_loop().time() + 10
    while True:
        stats = []
        for n in (0, 1, 3):  # the live processes
            async with http.get(f"http://127.0.0.1:{ports[n]}/stats") as resp:
                stats.append(await resp.json())
        done = sum(s["completed"] for s in stats)
        if done >= wanted or asyncio.get_running_loop().time() > end:
            return stats
        await asyncio.sleep(0.05)
