"""The aiohttp example app, driven in headless Chromium from start to a signed download."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import register_secret

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aiohttp_app.py"
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
    spec = importlib.util.spec_from_file_location("aiohttp_app_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_sign_in_the_browser_with_a_wrong_passcode_first(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    register_secret(MOBILE)
    app = load_example()
    async with (
        app.serve_sandbox(tmp_path / "signed") as running,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            await page.goto(running.url)
            await page.fill("#client_reference", "client-7")
            await page.fill("#mobile_number", MOBILE)
            await page.fill("#title", "Loan agreement")
            await page.click("button[type=submit]")

            await page.wait_for_url("**/consent")
            documents = await page.locator("li.document").all_inner_texts()
            assert documents == ["Loan agreement (loan-agreement.pdf)"]
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
            await page.wait_for_url("**/done")
            assert await page.inner_text("#outcome") == "Outcome: signed"
            async with page.expect_download() as info:
                await page.click("a.download")
            download = await info.value
            assert download.suggested_filename == "loan-agreement.pdf"
            data = Path(await download.path()).read_bytes()
        finally:
            await browser.close()

    assert data.startswith(b"%PDF-")
    assert b"/ByteRange" in data
    assert b"/Type /Sig" in data or b"/Type/Sig" in data
    confirms = [
        r.status
        for r in sandbox.request_log
        if r.route == "confirm_signature" and r.signature_id == signature_id
    ]
    assert confirms == [409, 200]  # the wrong passcode, then the right one
