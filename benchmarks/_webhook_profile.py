"""Benchmark 5's servers, one at a time, measured from inside: CPU and Python calls per event.

``python -m benchmarks._webhook_profile receiver|bare [EVENTS] [ROUNDS]`` serves the chosen
app of ``_webhook_server`` in this process and drives it from a child process (``... load
URL EVENTS``: 64 requests in flight, the same bodies as benchmark 5, after 500 warm-up
requests). It prints the process CPU per event (the lowest of ROUNDS rounds, each round's
figure beside it), then the Python calls per event from one round under cProfile and the
functions called at least once per event. Calls per event do not depend on the machine's
load, which makes them the figure to compare between two versions of the code. So do the
garbage collections per 1,000 events, by generation, over the rounds that are not profiled
(printed with the CPU they took): objects an event leaves alive make them come sooner and
cost more.

``python -m benchmarks._webhook_profile drive receiver|bare EVENTS ROUNDS`` serves and
drives the same way, measuring nothing, for an instruction counter run around it: under
``valgrind --tool=cachegrind --cache-sim=no`` (which follows only this process, not the
load generator), the difference of two runs' instruction totals (ROUNDS 1 and 3, say) over
the events between them is the server's user-space instructions per event, a figure that
does not depend on the machine's load at all.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import sys
import time

from aiohttp import web

from ._common import python_env, rate
from ._webhook_server import make_app

IN_FLIGHT = 64
WARM_UP = 500


async def _load(url: str, events: int) -> None:
    """The child: warm up, say ``ready``, then send ``events`` per ``run`` line on stdin."""
    import base64
    import json

    import aiohttp

    from ._webhook_server import PASSWORD, PREFIX, USER
    from .bench_webhooks import IDS, STATUSES

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    bodies = [
        json.dumps({"signatureId": sid, "status": STATUSES[n % 3], "statusCode": 3200}).encode()
        for n, sid in enumerate(IDS)
    ]
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    sent = 0
    async with aiohttp.ClientSession() as session:

        async def post() -> None:
            nonlocal sent
            n, sent = sent, sent + 1
            target = f"{url}{PREFIX}/{IDS[n % len(IDS)]}"
            async with session.post(target, data=bodies[n % len(IDS)], headers=headers) as r:
                if r.status >= 300:
                    raise AssertionError(f"answered {r.status}")
                await r.read()

        async def send(count: int) -> None:
            await rate(count, post, IN_FLIGHT)

        await send(WARM_UP)
        print("ready", flush=True)
        while sys.stdin.readline().strip() == "run":
            await send(events)
            print("done", flush=True)


async def _serve(kind: str, events: int, rounds: int, *, quiet: bool = False) -> None:
    runner = web.AppRunner(make_app(kind), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._webhook_profile",
        "load",
        f"http://127.0.0.1:{port}",
        str(events),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    assert child.stdin is not None
    assert child.stdout is not None
    if (await child.stdout.readline()).strip() != b"ready":
        raise RuntimeError("the load generator did not start")

    async def one_round(profile: cProfile.Profile | None) -> float:
        assert child.stdin is not None
        assert child.stdout is not None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        child.stdin.write(b"run\n")
        await child.stdout.readline()
        if profile is not None:
            profile.disable()
        return time.process_time() - started

    collections = [0, 0, 0]
    gc_cpu = [0.0]
    started = [0.0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            collections[info["generation"]] += 1
            gc_cpu[0] += time.process_time() - started[0]

    if quiet:
        try:
            for _ in range(rounds):
                await one_round(None)
        finally:
            child.stdin.write(b"stop\n")
            await child.wait()
            await runner.cleanup()
        return
    try:
        gc.callbacks.append(count)
        try:
            cpu = [await one_round(None) for _ in range(rounds)]
        finally:
            gc.callbacks.remove(count)
        profile = cProfile.Profile()
        await one_round(profile)
    finally:
        child.stdin.write(b"stop\n")
        await child.wait()
        await runner.cleanup()
    each = " ".join(f"{c / events * 1e6:.0f}" for c in cpu)
    print(f"{kind}: {min(cpu) / events * 1e6:.1f} us of CPU per event (rounds: {each})")
    per_k = " ".join(f"{n * 1000 / (events * rounds):.1f}" for n in collections)
    print(
        f"{kind}: garbage collections per 1,000 events by generation {per_k}, "
        f"{gc_cpu[0] / (events * rounds) * 1e6:.1f} us of CPU per event in them"
    )
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[1] for entry in stats.values())
    print(f"{kind}: {total / events:.1f} Python calls per event (cProfile, one round)")
    for (path, line, name), entry in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        if entry[1] >= events:
            where = path.rsplit("site-packages/", 1)[-1]
            print(f"  {entry[1] / events:6.2f}  {where}:{line}:{name}")


def main(argv: list[str]) -> None:
    if argv[0] == "load":
        asyncio.run(_load(argv[1], int(argv[2])))
        return
    if argv[0] == "drive":
        asyncio.run(_serve(argv[1], int(argv[2]), int(argv[3]), quiet=True))
        return
    events = int(argv[1]) if len(argv) > 1 else 4000
    rounds = int(argv[2]) if len(argv) > 2 else 5
    asyncio.run(_serve(argv[0], events, rounds))


if __name__ == "__main__":
    main(sys.argv[1:])
