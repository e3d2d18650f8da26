"""1. Per-call overhead: QESClient.get_signature_status against raw aiohttp doing the same GET
and JSON parse, on a minimal server in another process; httpx printed for reference.

Contenders run in interleaved rounds and each keeps its best round, so that a burst of noise
from other work on the machine hurts all of them alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from qes_async import QESClient

from ._common import Row, helper_process, rate

HEADERS = {"Authorization": "Bearer bench-token", "Accept": "application/json"}
SIG = "sig-1"


async def _measure(url: str, count: int, in_flight: int, rounds: int) -> dict[str, float]:
    status_url = f"{url}/v1/signatures/{SIG}/status"
    async with (
        aiohttp.ClientSession() as session,
        httpx.AsyncClient() as hx,
        QESClient("bench", "bench-secret", base_url=url) as client,
    ):

        async def raw() -> object:
            async with session.get(status_url, headers=HEADERS) as resp:
                resp.raise_for_status()
                return json.loads(await resp.read())

        async def sdk() -> object:
            return await client.get_signature_status(SIG)

        async def via_httpx() -> object:
            resp = await hx.get(status_url, headers=HEADERS)
            resp.raise_for_status()
            return resp.json()

        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "raw": raw,
            "sdk": sdk,
            "httpx": via_httpx,
        }
        for call in calls.values():  # warm up: connections, the token, caches
            await rate(min(count, 4 * in_flight), call, in_flight)
        best = dict.fromkeys(calls, 0.0)
        for _ in range(rounds):
            for name, call in calls.items():
                best[name] = max(best[name], await rate(count, call, in_flight))
        return best


def run(quick: bool) -> list[Row]:
    rows = []
    with helper_process("benchmarks._api_server") as (_, url):
        for label, in_flight, count in (("sequential", 1, 1500), ("64 in flight", 64, 4000)):
            count = 100 if quick else count
            best = asyncio.run(_measure(url, count, in_flight, 1 if quick else 3))
            note = f"{best['sdk']:.0f} vs raw {best['raw']:.0f} calls/s"
            rows.append(
                Row(f"1 status call, {label}", best["sdk"] / best["raw"], 0.85, True, note=note)
            )
            rows.append(
                Row(
                    f"1 httpx, {label} (vs raw)",
                    best["httpx"] / best["raw"],
                    0.0,
                    True,
                    note=f"{best['httpx']:.0f} calls/s",
                    informative=True,
                )
            )
    return rows
