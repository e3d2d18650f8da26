"""1. Per-call overhead: QESClient.get_signature_status against raw aiohttp doing the same GET
and JSON parse, on a minimal server in another process; httpx printed for reference, and the
client again with OpenTelemetry on (the SDK's tracer and meter providers, spans kept in its
in-memory exporter), to show what the telemetry costs when it is used. The ``sdk`` rounds run
with telemetry off: the hook is set only around the ``otel`` rounds.

Contenders run in interleaved rounds; each figure is the median of its rounds, and the
spread (the lowest and highest round's ratio) is printed so a reader can see how safely a
figure clears its target. Beside each ratio, the client process's CPU per call
(``time.process_time``; the server is another process), median of the rounds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from statistics import median
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


def status_calls(
    session: aiohttp.ClientSession, client: QESClient, url: str
) -> dict[str, Callable[[], Awaitable[object]]]:
    """The two contenders' status reads: raw aiohttp (GET, status check, JSON parse) and
    the SDK's."""
    status_url = f"{url}/v1/signatures/{SIG}/status"

    async def raw() -> object:
        async with session.get(status_url, headers=HEADERS) as resp:
            resp.raise_for_status()
            return json.loads(await resp.read())

    async def sdk() -> object:
        return await client.get_signature_status(SIG)

    return {"raw": raw, "sdk": sdk}


async def _measure(url: str, count: int, in_flight: int, rounds: int) -> dict[str, list[float]]:
    async with (
        aiohttp.ClientSession() as session,
        httpx.AsyncClient() as hx,
        QESClient("bench", "bench-secret", base_url=url) as client,
    ):
        status_url = f"{url}/v1/signatures/{SIG}/status"

        async def via_httpx() -> object:
            resp = await hx.get(status_url, headers=HEADERS)
            resp.raise_for_status()
            return resp.json()

        calls = status_calls(session, client, url)
        calls["httpx"] = via_httpx
        telemetry = _sdk_telemetry()
        if telemetry is not None:
            calls["otel"] = calls["sdk"]  # the same calls, with the hook set around them

        async def timed(name: str, n: int) -> tuple[float, float]:
            """(calls/s, process CPU us per call) of one round."""
            cpu = time.process_time()
            if name != "otel":
                per_s = await rate(n, calls[name], in_flight)
            else:
                assert telemetry is not None
                recorder, clear = telemetry
                _telemetry.hook = recorder
                try:
                    per_s = await rate(n, calls[name], in_flight)
                finally:
                    _telemetry.hook = None
                    clear()
            return per_s, (time.process_time() - cpu) / n * 1e6

        for name in calls:  # warm up: connections, the token, caches
            await timed(name, min(count, 4 * in_flight))
        got: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name in calls:
                per_s, cpu = await timed(name, count)
                got.setdefault(name, []).append(per_s)
                got.setdefault(f"{name}_cpu", []).append(cpu)
        return got


def _rows(label: str, got: dict[str, list[float]]) -> list[Row]:
    sdk, raw = median(got["sdk"]), median(got["raw"])
    pairs = [s / r for s, r in zip(got["sdk"], got["raw"], strict=True)]
    cpu_sdk, cpu_raw = median(got["sdk_cpu"]), median(got["raw_cpu"])
    rounds = len(pairs)
    rows = [
        Row(
            f"1 status call, {label}",
            sdk / raw,
            0.95,
            True,
            note=f"{sdk:.0f} vs raw {raw:.0f} calls/s, median of {rounds} interleaved rounds "
            f"(spread {min(pairs):.2f}x-{max(pairs):.2f}x)",
        ),
        Row(
            f"1 CPU/call over raw, {label}",
            cpu_sdk - cpu_raw,
            5,
            False,
            unit=" us",
            note=f"{cpu_sdk:.0f} vs raw {cpu_raw:.0f} us of client CPU per call "
            f"(process time, median of {rounds} rounds)",
        ),
        Row(
            f"1 httpx, {label} (vs raw)",
            median(got["httpx"]) / raw,
            0.0,
            True,
            note=f"{median(got['httpx']):.0f} calls/s",
            informative=True,
        ),
    ]
    if "otel" in got:
        otel = median(got["otel"])
        cost = median(got["otel_cpu"]) - cpu_sdk
        rows.append(
            Row(
                f"1 OpenTelemetry on, {label} (vs off)",
                otel / sdk,
                0.0,
                True,
                note=f"{otel:.0f} vs {sdk:.0f} calls/s, {cost:+.0f} us of CPU per call",
                informative=True,
            )
        )
    return rows


def run(quick: bool) -> list[Row]:
    rows = []
    with helper_process("benchmarks._api_server") as (_, url):
        for label, in_flight, count in (("sequential", 1, 1500), ("64 in flight", 64, 4000)):
            count = 100 if quick else count
            got = asyncio.run(_measure(url, count, in_flight, 1 if quick else 5))
            rows.extend(_rows(label, got))
    return rows
