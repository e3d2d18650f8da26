"""The download-rate benchmark's client, alone in a fresh process.

``python -m benchmarks._download_child URL FOLDER SIZE ROUNDS`` downloads a SIZE-byte PDF
from the stand-in server ROUNDS times each way, in interleaved rounds: with plain aiohttp
(the chunks written to a file as they come, on the event loop, then one fsync), with
plain aiohttp that also takes each chunk's SHA-256 (the least a client that records the
document's hash must add), and with ``QESClient.download_signed_document`` (hash, PDF
check, temp file, fsync, atomic rename). It prints JSON: the MB/s of every round, and the
process CPU seconds of every round, per side.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import aiohttp

MB = 1024 * 1024
READ_CHUNK = 256 * 1024  # what the SDK reads at a time, so both sides read alike


async def _raw(session: aiohttp.ClientSession, url: str, path: Path, hashed: bool = False) -> int:
    size = 0
    digest = hashlib.sha256() if hashed else None
    headers = {"Authorization": "Bearer bench-token", "Accept": "application/pdf"}
    async with session.get(url, headers=headers) as resp:
        resp.raise_for_status()
        with path.open("wb") as handle:
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                handle.write(chunk)
                if digest is not None:
                    digest.update(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    return size


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink()


async def measure(url: str, folder: Path, size: int, rounds: int) -> dict[str, list[float]]:
    from qes_async import QESClient

    out: dict[str, list[float]] = {
        f"{side}{kind}": [] for side in ("raw", "hashed", "sdk") for kind in ("", "_cpu")
    }
    doc_url = f"{url}/v1/signatures/sig-1/documents/{size}"
    async with (
        aiohttp.ClientSession() as session,
        QESClient(
            "bench", "secret", base_url=url, max_document_size=2 * size, max_download_size=2 * size
        ) as client,
    ):
        # warm up both paths (connections, token, code)
        await _raw(session, doc_url, folder / "raw.pdf")
        signed = await client.download_signed_document("sig-1", str(MB), folder)
        _remove(folder / "raw.pdf", signed.path)
        for _ in range(rounds):
            for side in ("raw", "hashed", "sdk"):
                cpu, wall = time.process_time(), time.perf_counter()
                if side != "sdk":
                    got = await _raw(session, doc_url, folder / "raw.pdf", side == "hashed")
                else:
                    signed = await client.download_signed_document("sig-1", str(size), folder)
                    got = signed.size
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                assert got == size, got
                # each side's file is removed outside its timing: no truncation is timed
                _remove(folder / "raw.pdf" if side != "sdk" else signed.path)
                out[side].append(size / MB / wall)
                out[f"{side}_cpu"].append(cpu)
    return out


if __name__ == "__main__":
    result = asyncio.run(
        measure(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    )
    print(json.dumps(result))
