"""The negative control: duplicate unsafe calls sent through a side door during a run.

``python -m chaos --plant-duplicates K`` sends K extra unsafe calls (creates, approvals
and confirmations in turn) beside the flows, with the header ``X-Sandbox-Faults: off`` so
that each reaches the service as sent. The independent count must then find exactly K:
if it finds fewer it is blind, if more it is counting something else.

The calls never disturb a flow: a planted create makes a workflow nobody uses, and
approvals and confirmations go only to signatures that are already signed (the service
refuses them with 409, which the count must still see: it counts what arrived).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

__all__ = ["plant_duplicates"]

KINDS = ("create_workflow", "approve_documents", "confirm_signature")
SIDE_DOOR = {"X-Sandbox-Faults": "off"}


async def plant_duplicates(
    sandbox: Any, records: list[Any], k: int, done: asyncio.Event
) -> list[str]:
    """Plant ``k`` calls while the flows run (the rest right after they end, if they end
    first); the kinds of the calls that reached the service, in order."""
    planted: list[str] = []
    if k <= 0:
        return planted
    async with aiohttp.ClientSession(base_url=sandbox.url, headers=SIDE_DOOR) as session:
        door = _Door(session, sandbox)
        targets: set[str] = set()
        while len(planted) < k:
            kind = KINDS[len(planted) % len(KINDS)]
            if kind == "create_workflow":
                reference = records[len(planted) % len(records)].reference
                await door.send(
                    "POST", "/v1/workflows", {"workflowName": "qes", "clientReference": reference}
                )
                planted.append(kind)
                continue
            sid = _signed(sandbox, targets)
            if sid is None:
                if done.is_set() and not _any_signed(sandbox):
                    break  # nothing ever signed: the summary shows planted < asked
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.05)
                continue
            targets.add(sid)
            if kind == "approve_documents":
                details = await door.send("GET", f"/v1/signatures/{sid}/details", None)
                await door.send("POST", f"/v1/signatures/{sid}/approval", _approval(details))
            else:
                await door.send(
                    "POST", f"/v1/signatures/{sid}/confirmation", {"passcode": "000000"}
                )
            planted.append(kind)
            if not done.is_set():
                await asyncio.sleep(0.2)  # spread over the run
    return planted


class _Door:
    """Authenticated calls that get a new token whenever the old one died (revocations
    and expiry in simulated time); a refused 401 never counts as having reached."""

    def __init__(self, session: aiohttp.ClientSession, sandbox: Any) -> None:
        self.session, self.sandbox = session, sandbox
        self.token: str | None = None

    async def _token(self) -> str:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.sandbox.client_id,
            "client_secret": self.sandbox.client_secret,
        }
        async with self.session.post("/v1/oauth2/token", json=body) as response:
            return str((await response.json())["access_token"])

    async def send(self, method: str, path: str, body: Any) -> Any:
        for _ in range(5):
            if self.token is None:
                self.token = await self._token()
            headers = {"Authorization": f"Bearer {self.token}"}
            async with self.session.request(method, path, json=body, headers=headers) as resp:
                if resp.status == 401:
                    self.token = None
                    continue
                with contextlib.suppress(Exception):
                    return await resp.json()
                return None
        raise RuntimeError(f"side door: {method} {path} kept getting 401")


def _signed(sandbox: Any, taken: set[str]) -> str | None:
    for sid, sig in sandbox.service.signatures.items():
        if sid not in taken and getattr(sig.status, "value", sig.status) == "signed":
            return str(sid)
    return None


def _any_signed(sandbox: Any) -> bool:
    return _signed(sandbox, set()) is not None


def _approval(details: Any) -> dict[str, Any]:
    if not isinstance(details, dict):
        return {}
    return {
        "approvedDocuments": [
            {"documentId": d.get("documentId"), "sha256": d.get("sha256")}
            for d in details.get("documents", [])
        ],
        "acceptedLegalConditions": [
            {"id": c.get("id"), "version": c.get("version")}
            for c in details.get("legalConditions", [])
        ],
    }
