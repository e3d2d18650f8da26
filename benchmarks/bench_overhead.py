"""1. Per-call overhead: QESClient.get_signature_status against raw aiohttp doing the same GET
and JSON parse, on a minimal server in another process; httpx printed for reference, and the
client again with OpenTelemetry on (the SDK's tracer and meter providers, spans kept in its
in-memory exporter), to show what the telemetry costs when it is used. The ``sdk`` rounds run
with telemetry off: the hook is set only around the ``otel`` rounds.

Contenders run in interleaved rounds and each keeps its best round, so that a burst of noise
from other work on the machine hurts all of them alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx

from qes_async import QESClient
from qes_async._runtime import telemetry as _telemetry

from ._common import Row, helper_process, rate

HEADERS = {"Authorization": "Bearer bench-token", "Accept": "application/json"}
SIG = "sig-1"


def _sdk_telemetry() -> tuple[Any, Callable[[], None]] | None:
    """A recorder on the OpenTelemetry SDK, and how to empty its exporter (None without
    the SDK installed)."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from qes_async._runtime.otel import Recorder
    except ImportError:
        return None
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    return Recorder(tracer_provider, meter_provider), exporter.clear


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
        telemetry = _sdk_telemetry()
        if telemetry is not None:
            calls["otel"] = sdk  # the same calls, with the hook set around them

        async def timed(name: str, n: int) -> float:
            if name != "otel":
                return await rate(n, calls[name], in_flight)
            assert telemetry is not None
            recorder, clear = telemetry
            _telemetry.hook = recorder
            try:
                return await rate(n, calls[name], in_flight)
            finally:
                _telemetry.hook = None
                clear()

        for name in calls:  # warm up: connections, the token, caches
            await timed(name, min(count, 4 * in_flight))
        best = dict.fromkeys(calls, 0.0)
        for _ in range(rounds):
            for name in calls:
                best[name] = max(best[name], await timed(name, count))
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
            if "otel" in best:
                cost = (1 / best["otel"] - 1 / best["sdk"]) * 1e6
                rows.append(
                    Row(
                        f"1 OpenTelemetry on, {label} (vs off)",
                        best["otel"] / best["sdk"],
                        0.0,
                        True,
                        note=f"{best['otel']:.0f} vs {best['sdk']:.0f} calls/s, "
                        f"{cost:+.0f} us per call",
                        informative=True,
                    )
                )
    return rows
