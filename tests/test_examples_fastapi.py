"""The FastAPI example over real HTTP (uvicorn): as a program, escaping, bounds, modes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from conftest import register_secret
from test_examples import EXAMPLES, load

from qes_async import make_pdf

MOBILE = "+31612345678"


async def test_fastapi_app_runs_as_a_program_and_serves_its_form(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "fastapi_app.py"),
        "--sandbox",
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = (await asyncio.wait_for(child.stdout.readline(), 20)).decode()
        assert line.startswith("serving on http://127.0.0.1:")
        assert line.endswith(" (sandbox); Ctrl-C stops\n")
        url = line.split()[2]
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
            hook = await http.post(f"{url}/fourthline/qes/abc", json={"status": "signed"})
        assert response.status_code == 200
        assert '<form method="post" action="/start" enctype="multipart/form-data">' in response.text
        assert "id='sandbox-banner'" in response.text
        assert hook.status_code == 401  # the mounted receiver, no credentials
    finally:
        child.terminate()
        await child.wait()


async def _start(http: httpx.AsyncClient, url: str, name: str, data: bytes) -> httpx.Response:
    form = {"client_reference": "client-9", "mobile_number": MOBILE, "source": "upload"}
    files = {"pdf": (name, data, "application/pdf")}
    return await http.post(f"{url}/start", data=form, files=files, follow_redirects=True)


async def _until_consent(http: httpx.AsyncClient, url: str) -> httpx.Response:
    for _ in range(100):
        response = await http.get(url, follow_redirects=True)
        if str(response.url).endswith("/consent"):
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("the flow never asked for consent")


async def test_fastapi_app_escapes_what_it_shows(tmp_path: Path) -> None:
    register_secret(MOBILE)
    app = load("fastapi_app")
    async with app.serve_sandbox(tmp_path) as running, httpx.AsyncClient() as http:
        started = await _start(
            http, running.url, "<img src=x onerror=alert(1)> & co.pdf", make_pdf("x")
        )
        page = await _until_consent(http, str(started.url))
        (flow_id,) = running.app.flows
        asked = (await http.get(f"{running.url}/api/flows/{flow_id}/pending")).json()
    text = page.text
    assert "<li class='document'>&lt;img src=x onerror=alert(1)&gt; &amp; co" in text
    assert "(<code>img-src-x-onerror-alert-1-co.pdf</code>)" in text
    assert "<img" not in text
    assert MOBILE not in text
    assert asked["waiting_for"] == "consent"
    assert asked["sent_to"] == "+31******678"
    assert MOBILE not in str(asked)


async def test_fastapi_app_refuses_a_form_larger_than_its_limit_before_reading_it(
    tmp_path: Path,
) -> None:
    app = load("fastapi_app")
    async with app.serve_sandbox(tmp_path) as running, httpx.AsyncClient() as http:
        too_large = await _start(http, running.url, "big.pdf", b"%PDF-" + b"0" * app.MAX_FORM)
        unknown = await http.get(f"{running.url}/flows/nope")
    assert too_large.status_code == 413
    assert "larger than" in too_large.text
    assert running.app.flows == {}
    assert unknown.status_code == 404


async def test_fastapi_app_shows_no_passcode_or_banner_outside_sandbox_mode(
    tmp_path: Path,
) -> None:
    register_secret(MOBILE)
    app = load("fastapi_app")
    async with app.serve_sandbox(tmp_path) as running, httpx.AsyncClient() as http:
        running.app.sandbox = None  # as when serving a real environment
        started = await _start(http, running.url, "loan.pdf", make_pdf("Loan"))
        consent = await _until_consent(http, str(started.url))
        response: Any = await http.post(
            str(consent.url), data={"decision": "approve"}, follow_redirects=True
        )
        for _ in range(100):
            if str(response.url).endswith("/passcode"):
                break
            await asyncio.sleep(0.05)
            response = await http.get(str(response.url), follow_redirects=True)
    assert str(response.url).endswith("/passcode")
    assert "Enter the passcode sent by SMS to +31******678." in response.text
    assert "SANDBOX" not in response.text
    assert "sandbox-passcode" not in response.text
