"""The streaming benchmark's client, alone in a fresh process so its peak RSS is its own.

``python -m benchmarks._stream_child URL FOLDER SIZE`` uploads a SIZE-byte PDF from FOLDER and
downloads one back, and prints JSON: the peak RSS (VmHWM) after warming up, and at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

MB = 1024 * 1024


def peak_rss() -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_pdf(path: Path, size: int) -> None:
    """A SIZE-byte PDF-looking file, written a megabyte at a time."""
    filler = b"%" + b"x" * (MB - 2) + b"\n"
    with path.open("wb") as handle:
        handle.write(b"%PDF-1.7\n")
        left = size - 9 - 7
        while left > 0:
            handle.write(filler[: min(left, MB)])
            left -= min(left, MB)
        handle.write(b"\n%%EOF\n")


async def transfer(url: str, folder: Path, size: int) -> tuple[int, int]:
    from qes_async import Document, QESClient

    small, big = folder / "small.pdf", folder / "big.pdf"
    write_pdf(small, MB)
    write_pdf(big, size)
    out = folder / "out"
    out.mkdir()
    async with QESClient(
        "bench", "secret", base_url=url, max_document_size=2 * size, max_download_size=2 * size
    ) as client:
        # warm up every code path with 1 MB, so the baseline holds the libraries' own state
        await client.upload_documents("sig-1", [Document.from_path(small)])
        await client.download_signed_document("sig-1", str(MB), out)
        baseline = peak_rss()
        await client.upload_documents("sig-1", [Document.from_path(big)])
        signed = await client.download_signed_document("sig-1", str(size), out)
        assert signed.size == size, signed.size
        return baseline, peak_rss()


if __name__ == "__main__":
    base, peak = asyncio.run(transfer(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
    print(json.dumps({"baseline": base, "peak": peak}))
