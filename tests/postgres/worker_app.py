"""One worker process of the many-workers test (run by test_pg_many_workers.py).

``python worker_app.py NAME DSN PREFIX SANDBOX_URL CLIENT_ID SECRET PDF WORKDIR MAX_FLOWS``
serves webhooks (Basic auth ``fourthline``/``hook-pass``), ``POST /start`` (flow ids to
create and drive here; ids starting with ``human-`` wait in the inbox for a web request),
``POST /consent/{id}`` and ``POST /passcode/{id}`` (answered through the signer relay), and
prints ``READY <port>`` when it listens.  The QES client secret comes from the command line
of a test only.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import attrs
from aiohttp import ClientSession, web

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    Document,
    HybridWaiter,
    PasscodeRequest,
    QESClient,
    SignatureFlow,
)
from qes_async.postgres import Worker, WorkerSettings
from qes_async.webhooks import BasicAuth, WebhookReceiver

# Compressed for the test; QES_TEST_LEASE_TTL lengthens the lease (and the grace) for a
# loaded machine running thousands of flows.
_TTL = float(os.environ.get("QES_TEST_LEASE_TTL", "3"))
SETTINGS = {
    "lease_ttl": _TTL,
    "sweep_interval": 0.5,
    "orphan_grace": _TTL,
    "relay_poll_interval": 2.0,
}


async def main(
    name: str, dsn: str, prefix: str, url: str, cid: str, secret: str, *rest: str
) -> None:
    pdf, workdir, max_flows = Path(rest[0]), Path(rest[1]), int(rest[2])
    consent_delay = float(rest[3]) if len(rest) > 3 else 0.0
    async with QESClient(cid, secret, base_url=url) as client, ClientSession() as http:

        async def passcode(request: PasscodeRequest) -> str:
            async with http.get(f"{url}/_sandbox/sms/{request.signature_id}/latest") as resp:
                return str((await resp.json())["passcode"])

        async def consent(request: ConsentRequest) -> bool:
            # A slow signer keeps this worker's flows parked at consent, so a test can kill
            # the worker while they are provably unfinished.
            await asyncio.sleep(consent_delay)
            return True

        auto = CallbackSigner(consent=consent, passcode=passcode)

        def options(flow_id: str) -> dict[str, Any]:
            return {
                "client": client,
                "store": worker.store,
                "signer": worker.inbox if flow_id.startswith("human-") else auto,
                "waiter": HybridWaiter(client, worker.dispatcher, safety_interval=2.0),
                "download_dir": workdir / "signed" / flow_id,
                "lease_ttl": SETTINGS["lease_ttl"],
                # Flows start from bytes: a takeover finds them in the database.
                "document_source": worker.document_source,
                # Like the leases, compressed: a worker killed after recording an approval
                # as in flight but before sending it leaves a flow whose new driver waits
                # this long for the status to show the approval before sending it again.
                "outcome_grace": 3.0,
            }

        async def resume(flow_id: str) -> SignatureFlow:
            return await SignatureFlow.resume(flow_id, **options(flow_id))

        settings = WorkerSettings(prefix=prefix, max_flows=max_flows, **SETTINGS)  # type: ignore[arg-type]
        worker = Worker(dsn, resume=resume, settings=settings, worker_id=name)
        async with worker:
            await serve(worker, pdf, options)


async def serve(worker: Worker, pdf: Path, options: Any) -> None:
    pdf_bytes = pdf.read_bytes()
    receiver = WebhookReceiver(worker.relay.recorder, BasicAuth("fourthline", "hook-pass"))

    async def start(request: web.Request) -> web.Response:
        for flow_id in (await request.json())["ids"]:
            opts = options(flow_id)
            flow = SignatureFlow(
                opts.pop("client"),
                flow_id=flow_id,
                documents=[Document.from_bytes(pdf.name, pdf_bytes)],
                mobile_number="+31612345678",
                client_reference="client-1",
                **opts,
            )
            worker.drive(flow)
        return web.json_response({"driving": len(worker.running)})

    async def answer(request: web.Request) -> web.Response:
        flow_id, body = request.match_info["id"], await request.json()
        if request.path.startswith("/consent/"):
            got = await worker.signer.submit_consent(flow_id, bool(body["approve"]))
        else:
            got = await worker.signer.submit_passcode(flow_id, str(body["passcode"]))
        return web.json_response(
            {
                "kind": got.kind.value,
                "attempts_left": got.attempts_left,
                "retry_after": got.retry_after,
            }
        )

    async def pending(request: web.Request) -> web.Response:
        asked = await worker.signer.pending(request.match_info["id"])
        return web.json_response(
            {
                "kind": type(asked).__name__ if asked is not None else None,
                "attempts_left": getattr(asked, "attempts_left", None),
                "documents": len(getattr(asked, "documents", ())),
                "driving": worker.drives(request.match_info["id"]),
            }
        )

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(attrs.asdict(worker.stats()))

    app = web.Application()
    app.add_routes(worker.relay.aiohttp_routes(receiver))
    app.add_routes([web.get("/pending/{id}", pending), web.get("/stats", stats)])
    app.add_routes([web.post("/start", start), web.post("/consent/{id}", answer)])
    app.add_routes([web.post("/passcode/{id}", answer)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
