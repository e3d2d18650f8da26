"""Many waiting flows in one process: ``python -m benchmarks._many_child N FOLDER``.

Starts N flows against the in-process sandbox (fake clock, webhooks, one hybrid waiter);
every signer holds its consent until all N are parked there, then all are released and
must end signed. Flows are started as the earlier ones park (at most ``RAMP`` on their
way at once), as a service taking on its clients would. Prints JSON: the current RSS
once all are parked, the peak RSS (VmHWM) at the end, the RSS before the flows, the
seconds each phase took, and how often the fake clock had to be moved on (``_nudge``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from qes_async import CallbackSigner, FlowOutcome

from ._common import quiet_logs
from ._world import World, world

NUDGE = 10.0  # fake seconds
RAMP = 2_000  # flows started and not yet parked on consent, at most


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


nudges = 0  # times the fake clock was moved on because nothing reached the sandbox


async def _nudge(w: World) -> None:
    """Move the fake clock on by ``NUDGE`` seconds whenever no request has reached the
    sandbox for a second of real time: what the real clock would do for a flow whose
    webhook was lost under the load (its waiter's fallback read is due on the clock)."""
    global nudges
    seen = -1
    while True:
        await asyncio.sleep(1.0)
        now = len(w.sandbox.request_log)
        if now == seen:
            w.clock.advance(NUDGE)
            nudges += 1
        seen = now


async def main(flows: int, folder: Path) -> dict[str, Any]:
    async with world(folder, webhooks=True) as w:
        w.sandbox.add_client("client")
        gate, parked = asyncio.Event(), 0

        async def consent(request: Any) -> bool:
            nonlocal parked
            parked += 1
            await gate.wait()
            return True

        async def passcode(request: Any) -> str:
            return w.sandbox.latest_passcode(request.signature_id)

        signer = CallbackSigner(consent=consent, passcode=passcode)
        assert (await w.flow("client").run()).outcome is FlowOutcome.SIGNED  # warm up
        before = _status("VmRSS:")
        started = time.perf_counter()
        nudger = asyncio.ensure_future(_nudge(w))
        tasks = []
        for n in range(flows):
            # Start them as fast as they park, at most RAMP on their way at once: started
            # all in one go, the last ones' first calls would wait behind 100,000 others
            # for one of the pool's connections until their time bound ran out.
            while n - parked >= RAMP:
                await asyncio.sleep(0.01)
                if any(t.done() for t in tasks[-RAMP:]):
                    break  # a flow failed before consent: the gather below says why
            tasks.append(asyncio.ensure_future(w.flow("client", signer=signer).run()))
        while parked < flows:
            await asyncio.sleep(0.1)
            if any(t.done() for t in tasks[:: max(1, flows // 100)]):
                break  # a flow failed before consent: the gather below says why
        parked_at, parked_s = _status("VmRSS:"), time.perf_counter() - started
        gate.set()
        results = await asyncio.gather(*tasks)
        nudger.cancel()
        assert all(r.outcome is FlowOutcome.SIGNED for r in results)
        return {
            "flows": flows,
            "before": before,
            "parked": parked_at,
            "peak": _status("VmHWM:"),
            "parked_s": parked_s,
            "total_s": time.perf_counter() - started,
            "nudges": nudges,
        }


if __name__ == "__main__":
    quiet_logs()
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))))
