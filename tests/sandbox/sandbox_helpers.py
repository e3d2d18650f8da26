"""Raw-HTTP helpers for the sandbox tests: a plain aiohttp client, never QESClient."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qes_async import FakeClock, make_pdf
from qes_async.sandbox import SandboxServer

PHONE = "+31612345678"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


class Answer:
    """One HTTP answer: status, headers, raw body and (if JSON) the parsed body."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json: Any = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.raw[:200]!r})"


class Api:
    """Drives the sandbox through raw HTTP."""

    def __init__(self, sandbox: SandboxServer, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        all_headers = dict(headers or {})
        own_token = auth and "Authorization" not in all_headers
        if own_token:
            if self.token is None:
                self.token = await self.new_token()
            all_headers["Authorization"] = f"Bearer {self.token}"
        answer = await self._send(method, path, json, data, all_headers)
        if own_token and answer.status == 401 and answer.json["code"] == "token_expired":
            # Tests move the clock by hours; the token's hour is then over, as in real life.
            self.token = await self.new_token()
            all_headers["Authorization"] = f"Bearer {self.token}"
            answer = await self._send(method, path, json, data, all_headers)
        return answer

    async def _send(
        self, method: str, path: str, json: Any, data: Any, headers: dict[str, str]
    ) -> Answer:
        async with self.session.request(
            method, self.sandbox.url + path, json=json, data=data, headers=headers
        ) as response:
            return Answer(response.status, response.headers, await response.read())

    async def new_token(self) -> str:
        answer = await self.call(
            "POST",
            "/v1/oauth2/token",
            json={
                "grant_type": "client_credentials",
                "client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret,
            },
            auth=False,
        )
        assert answer.status == 200, answer
        token: str = answer.json["access_token"]
        return token

    async def create(self, reference: str = "client-1") -> str:
        answer = await self.call(
            "POST", "/v1/workflows", json={"workflowName": "qes", "clientReference": reference}
        )
        assert answer.status == 201, answer
        sid: str = answer.json["workflowId"]
        return sid

    async def status(self, sid: str) -> dict[str, Any]:
        answer = await self.call("GET", f"/v1/signatures/{sid}/status")
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json
        return body

    async def upload(self, sid: str, pdfs: dict[str, bytes] | None = None) -> Answer:
        pdfs = pdfs if pdfs is not None else {"contract.pdf": make_pdf("Contract")}
        return await self.call("POST", f"/v1/signatures/{sid}/documents", data=documents_form(pdfs))

    async def mobile(self, sid: str, number: str = PHONE) -> Answer:
        return await self.call(
            "PUT", f"/v1/signatures/{sid}/mobile-number", json={"mobileNumber": number}
        )

    async def selfie(self, sid: str, jpeg: bytes = JPEG) -> Answer:
        with aiohttp.MultipartWriter("form-data") as form:
            part = form.append(jpeg, {"Content-Type": "image/jpeg"})
            part.set_content_disposition("form-data", name="selfie", filename="selfie.jpg")
        return await self.call("POST", f"/v1/signatures/{sid}/selfie", data=form)

    async def details(self, sid: str) -> Answer:
        return await self.call("GET", f"/v1/signatures/{sid}/details?language=en")

    async def approve(self, sid: str, details: dict[str, Any] | None = None) -> Answer:
        if details is None:
            details = (await self.details(sid)).json
        return await self.call("POST", f"/v1/signatures/{sid}/approval", json=approval(details))

    async def confirm(self, sid: str, passcode: str | None = None) -> Answer:
        code = passcode if passcode is not None else self.sandbox.latest_passcode(sid)
        return await self.call(
            "POST", f"/v1/signatures/{sid}/confirmation", json={"passcode": code}
        )

    async def to_consent(self, reference: str = "client-1") -> str:
        sid = await self.create(reference)
        assert (await self.upload(sid)).status == 204
        assert (await self.mobile(sid)).status == 204
        return sid

    async def to_confirmation(self, reference: str = "client-1") -> str:
        sid = await self.to_consent(reference)
        assert (await self.approve(sid)).status == 200
        return sid

    async def to_signed(self, reference: str = "client-1") -> str:
        sid = await self.to_confirmation(reference)
        assert (await self.confirm(sid)).status == 200
        return sid


def documents_form(pdfs: dict[str, bytes]) -> aiohttp.MultipartWriter:
    """The contract's upload: a metadata JSON part, then one PDF part per document."""
    metadata = {"documents": [{"fileName": n, "displayName": n.upper()} for n in pdfs]}
    with aiohttp.MultipartWriter("form-data") as form:
        part = form.append_json(metadata)
        part.set_content_disposition("form-data", name="metadata")
        for name, content in pdfs.items():
            part = form.append(content, {"Content-Type": "application/pdf"})
            part.set_content_disposition("form-data", name="file", filename=name)
    return form


def approval(details: dict[str, Any]) -> dict[str, Any]:
    """An approval of every document and every legal condition in ``details``."""
    return {
        "approvedDocuments": [
            {"documentId": d["documentId"], "sha256": d["sha256"]} for d in details["documents"]
        ],
        "acceptedLegalConditions": [
            {"id": c["id"], "version": c["version"]} for c in details["legalConditions"]
        ],
        "passcodeLanguage": "en",
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(clock=clock, seed=7) as server:
        yield server


@pytest.fixture
async def api(sandbox: SandboxServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(sandbox, session)
