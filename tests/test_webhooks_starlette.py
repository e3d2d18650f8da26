"""The Starlette example wires the receiver's neutral core; driven via httpx's ASGI transport."""

from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx

from qes_async import FakeClock, HybridWaiter, Status, StatusReport, WebhookDispatcher
from qes_async.webhooks import BasicAuth, WebhookReceiver

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "starlette_webhooks.py"
SID = "7d0e5a34-0000-4000-8000-00000000abcd"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("starlette_webhooks_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Source:
    def __init__(self) -> None:
        self.status = "confirmation_required"

    async def get_signature_status(self, signature_id: str) -> StatusReport:
        return StatusReport(signature_id=signature_id, status=Status(self.status))


async def test_starlette_app_feeds_a_hybrid_waiter() -> None:
    clock = FakeClock()
    dispatcher = WebhookDispatcher(clock=clock)
    receiver = WebhookReceiver(dispatcher, BasicAuth("fourthline", "starlette-secret-1"))
    app = load_example().create_app(receiver)
    source = Source()
    credentials = base64.b64encode(b"fourthline:starlette-secret-1").decode()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        refused = await http.post(f"/fourthline/qes/{SID}", json={"status": "signed"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        mismatch = await http.post(
            f"/fourthline/qes/{SID}",
            json={"signatureId": "other", "status": "signed"},
            headers={"Authorization": f"Basic {credentials}"},
        )
        assert mismatch.status_code == 422
        source.status = "signed"
        accepted = await http.post(
            f"/fourthline/qes/{SID}",
            json={"signatureId": SID, "status": "signed"},
            headers={"Authorization": f"Basic {credentials}"},
        )
        assert accepted.status_code == 204
    # The event came before the wait; the waiter uses it without any polling or time passing.
    waiter = HybridWaiter(source, dispatcher, safety_interval=60)
    report = await waiter.wait_for(SID, {"signed"}, deadline=clock.time() + 3600)
    assert report.status is Status.SIGNED
    assert clock.time() == FakeClock.DEFAULT_START
