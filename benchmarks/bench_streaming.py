"""4. Streaming: upload and download a 200 MB PDF through QESClient in a fresh process; the
peak RSS (VmHWM) growth over the process's warmed-up baseline must stay small, whatever the
file's size. The server is the minimal stand-in in another process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from ._common import ROOT, Row, helper_process, python_env

MB = 1024 * 1024


def run(quick: bool) -> list[Row]:
    size = (20 if quick else 200) * MB
    with helper_process("benchmarks._api_server") as (_, url), tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks._stream_child", url, tmp, str(size)],
            capture_output=True,
            text=True,
            check=True,
            env=python_env(),
            cwd=ROOT,
            timeout=600,
        ).stdout
    data = json.loads(out.strip().splitlines()[-1])
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
        )
    ]
