"""The sandbox in a process of its own, for the ceremony benchmark that measures the SDK
with the event loop to itself, as in production.

``python -m benchmarks._sandbox_child`` prints one JSON line (``url``, ``client_id``,
``client_secret``) and serves until terminated: real clock, no processing delay, client
reference ``client`` registered. Webhooks are set and passcodes read through the control
endpoints (``PUT /_sandbox/webhooks``, ``GET /_sandbox/sms/{id}/latest``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from qes_async.sandbox import SandboxServer


async def main() -> None:
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    async with SandboxServer(seed=7) as sandbox:
        sandbox.add_client("client")
        line = {"url": sandbox.url, "client_id": sandbox.client_id}
        line["client_secret"] = sandbox.client_secret
        print(json.dumps(line), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
