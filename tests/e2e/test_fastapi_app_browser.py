"""The FastAPI example app, driven in headless Chromium: an uploaded PDF to a signed
download and the InfoCert contract, with the sandbox's real webhooks coming in through the
mounted qes_async.asgi receiver; and a decline with a way back."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import register_secret

from qes_async import make_pdf

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"
MOBILE = "+31612345678"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(
        f"headless Chromium not found at {CHROMIUM} (install Debian's chromium to run this "
        "test; under CI it fails instead)",
        allow_module_level=True,
    )


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _browser(pw: Any) -> Any:
    return await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


async def test_sign_an_uploaded_pdf_in_the_browser_with_real_webhooks(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    register_secret(MOBILE)
    upload = tmp_path / "My Contract.pdf"
    upload.write_bytes(make_pdf("My contract\nAmount: EUR 1,000"))
    not_a_pdf = tmp_path / "notes.pdf"
    not_a_pdf.write_bytes(b"just text")
    app = load_example()
    # A slow service: the progress page must show while the signed PDF is prepared.
    async with (
        app.serve_sandbox(tmp_path / "signed", processing_delay=1.5) as running,
        async_playwright() as pw,
    ):
        browser = await _browser(pw)
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            await page.goto(running.url)
            assert "SANDBOX" in await page.inner_text("#sandbox-banner")
            assert await page.is_checked("#source-sample")  # the sample is preselected

            # Inputs are checked before any flow starts; the form comes back with the error.
            await page.fill("#client_reference", "client-8")
            await page.fill("#mobile_number", "0612 345")
            await page.check("#source-upload")
            await page.set_input_files("#pdf", str(not_a_pdf))
            await page.click("#start")
            await page.locator("#error-mobile_number").wait_for()
            assert "+31612345678" in await page.inner_text("#error-mobile_number")
            assert "not a PDF" in await page.inner_text("#error-pdf")
            assert await page.input_value("#client_reference") == "client-8"
            assert await page.is_checked("#source-upload")
            assert running.app.flows == {}

            await page.fill("#mobile_number", MOBILE)
            await page.set_input_files("#pdf", str(upload))
            await page.click("#start")

            await page.wait_for_url("**/consent")
            documents = await page.locator("li.document").all_inner_texts()
            assert documents == ["My Contract (my-contract.pdf)"]
            conditions = await page.locator("li.condition a").all_inner_texts()
            assert conditions == ["InfoCert QTSP terms and conditions", "InfoCert privacy notice"]
            await page.click("#approve")

            await page.wait_for_url("**/passcode")
            right = await page.inner_text("#sandbox-passcode")
            sandbox = running.sandbox
            flow_id = page.url.split("/flows/")[1].split("/")[0]
            signature_id = running.app.flows[flow_id].flow.state.generations[-1].signature_id
            assert right == sandbox.latest_passcode(signature_id)
            register_secret(right)
            wrong = "000000" if right != "000000" else "111111"
            await page.fill("#passcode", wrong)
            await page.click("#confirm")
            feedback = page.locator("#feedback")
            await feedback.wait_for()
            assert await feedback.inner_text() == "Wrong passcode. 2 attempts left."

            await page.fill("#passcode", right)
            await page.click("#confirm")
            await page.locator("#progress").wait_for()  # at once, while the service works
            await page.wait_for_url("**/done")
            assert await page.inner_text("#outcome") == "Outcome: signed"
            async with page.expect_download() as info:
                await page.click("a.download")
            download = await info.value
            assert download.suggested_filename == "my-contract.pdf"
            data = Path(await download.path()).read_bytes()
            async with page.expect_download() as info:
                await page.click("#contract")
            contract = Path(await (await info.value).path()).read_bytes()
        finally:
            await browser.close()

    assert data.startswith(b"%PDF-")
    assert b"/ByteRange" in data
    assert b"/Type /Sig" in data or b"/Type/Sig" in data
    assert contract.startswith(b"%PDF-")
    confirms = [
        r.status
        for r in sandbox.request_log
        if r.route == "confirm_signature" and r.signature_id == signature_id
    ]
    assert confirms == [409, 200]  # the wrong passcode, then the right one
    # The sandbox's webhooks reached the app's mounted receiver and were all taken.
    delivered = [d for d in sandbox.webhook_deliveries if d.signature_id == signature_id]
    assert delivered
    assert {d.http_status for d in delivered} == {204}
    assert "signed" in {d.status for d in delivered}
    receiver = running.app.receiver
    assert receiver.accepted >= len(delivered)
    assert receiver.refusals == {}


async def test_decline_in_the_browser_then_start_again(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    register_secret(MOBILE)
    app = load_example()
    async with (
        app.serve_sandbox(tmp_path / "signed") as running,
        async_playwright() as pw,
    ):
        browser = await _browser(pw)
        try:
            page = await browser.new_page()
            page.set_default_timeout(10_000)
            await page.goto(running.url)
            await page.fill("#mobile_number", MOBILE)
            await page.click("#start")  # the preselected sample
            await page.wait_for_url("**/consent")
            documents = await page.locator("li.document").all_inner_texts()
            assert documents == ["Loan agreement (loan-agreement.pdf)"]
            await page.click("#decline")
            await page.wait_for_url("**/done")
            assert await page.inner_text("#outcome") == "Outcome: declined"
            assert await page.locator("a.download").count() == 0
            await page.click("#again")
            await page.locator("#start").wait_for()
            assert page.url.rstrip("/") == running.url
        finally:
            await browser.close()
    (view,) = running.app.flows.values()
    assert view.task.result().outcome.value == "declined"
