"""4. Streaming: upload and download a 200 MB PDF through QESClient in a fresh process; the
peak RSS (VmHWM) growth over the process's warmed-up baseline must stay small, whatever the
file's size. The server is the minimal stand-in in another process.

And the download rate: the same 200 MB PDF from the same server, in interleaved rounds in
one fresh process, through ``download_signed_document`` (hash, PDF check, temp file, fsync,
atomic rename) and through plain aiohttp writing each chunk to a file and fsyncing it. The
ratio is of the medians; the spread is the lowest and highest round's ratio.
"""

from __future__ import annotations

import tempfile
from statistics import median

from ._common import Row, child_json, helper_process

MB = 1024 * 1024


def run(quick: bool) -> list[Row]:
    size = (20 if quick else 200) * MB
    rounds = 2 if quick else 7
    with helper_process("benchmarks._api_server") as (_, url):
        with tempfile.TemporaryDirectory() as tmp:
            data = child_json("benchmarks._stream_child", url, tmp, str(size))
        with tempfile.TemporaryDirectory() as tmp:
            speed = child_json("benchmarks._download_child", url, tmp, str(size), str(rounds))
    growth = (data["peak"] - data["baseline"]) / MB
    return [
        Row(
            "4 streaming: RSS growth",
            growth,
            32,
            False,
            unit=" MB",
            note=f"{size // MB} MB up and down; peak {data['peak'] / MB:.0f} MB "
            f"over {data['baseline'] / MB:.0f} MB",
        ),
        *_download_rows(speed, size),
    ]


def _download_rows(speed: dict[str, list[float]], size: int) -> list[Row]:
    sdk, raw, hashed = median(speed["sdk"]), median(speed["raw"]), median(speed["hashed"])
    pairs = [s / r for s, r in zip(speed["sdk"], speed["raw"], strict=True)]
    cpu_sdk, cpu_raw = median(speed["sdk_cpu"]), median(speed["raw_cpu"])
    cpu_hashed = median(speed["hashed_cpu"])
    return [
        Row(
            "4 download vs raw aiohttp + fsync",
            sdk / raw,
            0.9,
            True,
            note=f"{sdk:.0f} vs {raw:.0f} MB/s, {size // MB} MB, median of {len(pairs)} "
            f"interleaved rounds (spread {min(pairs):.2f}x-{max(pairs):.2f}x); "
            f"process CPU {cpu_sdk:.2f} vs {cpu_raw:.2f} s",
        ),
        # What the hash alone costs plain aiohttp, in the same rounds: the SDK must take
        # the document's SHA-256, so this is how near the row's target any client can get.
        Row(
            "4 raw aiohttp + sha256 + fsync (vs raw)",
            hashed / raw,
            0.0,
            True,
            note=f"{hashed:.0f} MB/s; process CPU {cpu_hashed:.2f} s; "
            f"the SDK vs this {sdk / hashed:.2f}x",
            informative=True,
        ),
    ]
