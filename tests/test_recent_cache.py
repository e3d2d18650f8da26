"""The client's per-signature caches keep a working set, not one entry per waiting flow.

A client serving 100,000 flows that wait on webhooks must not hold a prepared status
read and parsed URLs for each of them; a status read polled again and again must still
be found (least recently used goes first, not oldest inserted).
"""

from __future__ import annotations

from qes_async import QESClient
from qes_async._client import aiohttp_transport
from qes_async._client import client as client_module
from qes_async._client.aiohttp_transport import AiohttpTransport
from qes_async._core.recent import Recent
from qes_async.testing import MockResponse, MockTransport

BASE = "https://qes.test"
SIGNATURES = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(300)]


def test_the_least_recently_used_goes_first() -> None:
    cache: Recent[str, int] = Recent(3)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.keep(key, value)
    assert cache.recent("a") == 1  # now the most recent
    cache.keep("d", 4)
    assert sorted(cache) == ["a", "c", "d"]  # "b" went, though "a" was stored first
    cache.keep("a", 5)  # storing again does not drop another entry
    assert sorted(cache) == ["a", "c", "d"]
    assert cache["a"] == 5
    assert cache.recent("b") is None


async def test_the_client_keeps_a_bounded_working_set_of_status_reads() -> None:
    assert client_module._STATUS_REQUESTS_KEPT <= 256
    mock = MockTransport()
    for sid in SIGNATURES:
        body = {"signatureId": sid, "status": "pending", "statusCode": None, "errors": []}
        mock.add("GET", f"/v1/signatures/{sid}/status", MockResponse(200, json=body))
    async with QESClient("id", "secret", base_url=BASE, transport=mock) as client:
        hot = SIGNATURES[0]
        await client.get_signature_status(hot)
        first = client._status_requests[hot]
        for sid in SIGNATURES[1:]:
            await client.get_signature_status(sid)
            await client.get_signature_status(hot)  # polled all along
        assert len(client._status_requests) <= client_module._STATUS_REQUESTS_KEPT
        assert client._status_requests[hot] is first  # never evicted, never rebuilt
        assert SIGNATURES[1] not in client._status_requests  # the cold ones went


def test_the_transport_keeps_a_bounded_working_set_of_parsed_urls() -> None:
    assert aiohttp_transport._URLS_KEPT <= 256  # about 0.7 KB each
    transport = AiohttpTransport()
    hot = transport._url(f"{BASE}/v1/signatures/hot/status")
    for n in range(aiohttp_transport._URLS_KEPT + 50):
        transport._url(f"{BASE}/v1/signatures/{n}/status")
        assert transport._url(f"{BASE}/v1/signatures/hot/status") is hot
    assert len(transport._urls) == aiohttp_transport._URLS_KEPT
