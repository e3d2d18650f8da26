"""Many waiting flows in one process: ``python -m benchmarks._many_child N FOLDER``.

Starts N flows against the in-process sandbox (fake clock, webhooks, one hybrid waiter);
every signer holds its consent until all N are parked there, then the consents are given
and every flow must end signed. Flows are started as the earlier ones park (at most
``RAMP`` on their way at once), as a service taking on its clients would, and the consents
are given the same way, in parked order: at most ``RAMP`` released flows on their way to
their end at once, the next released as each one ends (all N at once would send N flows
to their next calls together, to queue for the pool's connections past their time bound).

Prints one line of JSON: ``before`` (the RSS before the flows, after one warm-up flow),
``parked`` (the RSS once all are parked), ``peak`` (VmHWM, the peak RSS, at the end),
``parked_s`` (seconds to park them all), ``release_s`` (seconds from the first consent
given to the last flow ended), ``total_s``, ``ramp`` (the most flows on their way at
once, both phases), ``most_released_on_way`` (the most released flows seen on their way
at once), ``nudges`` (how often the fake clock had to be moved on, see
``_world.nudged``), ``failed_deliveries`` (webhook deliveries the sandbox saw fail),
``signed`` and ``failed`` (how many flows ended signed, and how many did not, by error
type: the first such error's traceback goes to stderr). Exits 1 unless all N signed.
A consent asked again once all held ones were given (a flow resending a lost
approval asks first) is given at once.

Each flow's result is counted as its task ends and then let go, and the sandbox forgets
that flow's signatures (the service is not ours), as a service would do with a flow it
has reported: the peak is then what the flows in the process hold, not 100,000 results
(about 20 KB each, their evidence copy included) kept to the end for one ``gather``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from qes_async import CallbackSigner, FlowOutcome

from ._common import quiet_logs
from ._world import nudged, world

RAMP = 2_000  # flows started and not yet parked on consent, at most


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


async def main(flows: int, folder: Path) -> dict[str, Any]:
    async with world(folder, webhooks=True) as w, nudged(w) as nudges:
        w.sandbox.add_client("client")
        # The consents held, in parked order: each a future its signer awaits.
        held: deque[asyncio.Future[bool]] = deque()
        loop = asyncio.get_running_loop()
        parked = ended = 0
        given = False  # all held consents given: one asked again from then on is at once
        moved = asyncio.Event()  # set when a flow parks or ends

        async def until(done: Callable[[], bool]) -> None:
            while not done():
                moved.clear()
                await moved.wait()

        async def consent(request: Any) -> bool:
            nonlocal parked
            if given:  # asked again (an approval whose answer was lost, then resent)
                return True
            parked += 1
            moved.set()
            future: asyncio.Future[bool] = loop.create_future()
            held.append(future)
            return await future

        async def passcode(request: Any) -> str:
            return w.sandbox.latest_passcode(request.signature_id)

        running: set[asyncio.Future[Any]] = set()
        failed: Counter[str] = Counter()

        def on_end(task: asyncio.Future[Any]) -> None:
            nonlocal ended
            ended += 1
            moved.set()
            running.discard(task)
            error = task.exception()
            if error is not None:
                if not failed:
                    traceback.print_exception(error, file=sys.stderr)
                failed[type(error).__name__] += 1
                return
            result = task.result()
            if result.outcome is not FlowOutcome.SIGNED:
                failed[f"outcome {result.outcome.value}"] += 1
            for generation in result.generations:
                w.sandbox.service.signatures.pop(generation.signature_id or "", None)

        def room_to_start(started: int) -> bool:
            return started - parked - ended < RAMP

        def room_to_release(released: int) -> bool:
            return released - (ended - early) < RAMP

        early = 0  # flows that ended before their consent was given (never held)
        signer = CallbackSigner(consent=consent, passcode=passcode)
        assert (await w.flow("client").run()).outcome is FlowOutcome.SIGNED  # warm up
        before = _status("VmRSS:")
        started = time.perf_counter()
        for n in range(flows):
            # Start them as fast as they park, at most RAMP on their way at once: started
            # all in one go, the last ones' first calls would wait behind 100,000 others
            # for one of the pool's connections until their time bound ran out.
            await until(partial(room_to_start, n))
            task = asyncio.ensure_future(w.flow("client", signer=signer).run())
            task.add_done_callback(on_end)
            running.add(task)
        await until(lambda: parked + ended >= flows)  # one that ended early never parks
        parked_at, parked_s = _status("VmRSS:"), time.perf_counter() - started
        released_at = time.perf_counter()
        # Give the consents the same way: at most RAMP released flows on their way at
        # once (those that ended before consent were never held, so they do not count).
        early, released, most = ended, 0, 0
        while held:
            future = held.popleft()
            if not future.done():  # else its flow stopped waiting (its window passed)
                await until(partial(room_to_release, released))
                future.set_result(True)
                released += 1
                most = max(most, released - (ended - early))
        given = True  # no await since held was last seen empty: none can be left in it
        await until(lambda: ended >= flows)
        release_s = time.perf_counter() - released_at
        return {
            "flows": flows,
            "before": before,
            "parked": parked_at,
            "peak": _status("VmHWM:"),
            "parked_s": parked_s,
            "release_s": release_s,
            "total_s": time.perf_counter() - started,
            "ramp": RAMP,
            "most_released_on_way": most,
            "nudges": nudges.times,
            "failed_deliveries": nudges.failed_deliveries,
            "signed": flows - sum(failed.values()),
            "failed": dict(failed),
        }


if __name__ == "__main__":
    quiet_logs()
    got = asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
    print(json.dumps(got))
    sys.exit(0 if got["signed"] == got["flows"] else 1)
