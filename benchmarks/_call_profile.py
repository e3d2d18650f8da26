"""Benchmark 1 measured from inside: Python calls per status call, by package.

``python -m benchmarks._call_profile [CALLS]`` (default 2,000) serves benchmark 1's
stand-in server in its own process and makes CALLS sequential status reads with each
side, the SDK (``QESClient.get_signature_status``) and raw aiohttp (GET, status check,
JSON parse), each under cProfile after a warm-up, and prints the calls per call grouped
by package. Calls do not move with a shared machine's load, so this compares two
versions of the code where benchmark 1's ratio cannot.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys

import aiohttp

from qes_async import QESClient

from ._ceremony_profile import _by_package
from ._common import helper_process
from .bench_overhead import status_calls


async def _count(url: str, calls: int) -> dict[str, dict[str, int]]:
    async with (
        aiohttp.ClientSession() as session,
        QESClient("bench", "bench-secret", base_url=url) as client,
    ):
        sides = status_calls(session, client, url)
        counted: dict[str, dict[str, int]] = {}
        for name in ("sdk", "raw"):
            call = sides[name]
            for _ in range(200):  # warm up: the connection, the token, the caches
                await call()
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(calls):
                await call()
            profile.disable()
            counted[name] = _by_package(pstats.Stats(profile))[0]
        return counted


def main(calls: int) -> None:
    with helper_process("benchmarks._api_server") as (_, url):
        counted = asyncio.run(_count(url, calls))
    for name, by_package in counted.items():
        total = sum(by_package.values()) / calls
        print(f"{name}: {total:,.0f} calls a status call ({calls} sequential calls)")
        for package, count in sorted(by_package.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {package:<24} {count / calls:8.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)
