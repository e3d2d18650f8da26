"""The aiohttp example app, driven in headless Chromium: form checks, progress, signing, decline."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import register_secret

from qes_async import make_pdf

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


@contextlib.asynccontextmanager
async def browser_page(pw: Any) -> AsyncIterator[Any]:
    browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    try:
        context = await browser.new_context(accept_downloads=True)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        yield page
    finally:
        await browser.close()


def pdf_file(name: str, data: bytes, mime: str = "application/pdf") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


async def field_error(page: Any, name: str) -> str:
    return str(await page.inner_text(f"#{name}-error"))


async def download(page: Any, selector: str) -> tuple[str, bytes]:
    async with page.expect_download() as info:
        await page.click(selector)
    done = await info.value
    return done.suggested_filename, Path(await done.path()).read_bytes()


def assert_signed_pdf(data: bytes) -> None:
    assert data.startswith(b"%PDF-")
    assert b"/ByteRange" in data
    assert b"/Type /Sig" in data or b"/Type/Sig" in data


async def test_sign_your_own_pdf_after_fixing_the_form_and_a_wrong_passcode(
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright

    register_secret(MOBILE)
    app = load_example()
    own_pdf = make_pdf("My own contract\nParty: Jane Doe")
    async with (
        app.serve_sandbox(tmp_path / "signed") as running,
        async_playwright() as pw,
        browser_page(pw) as page,
    ):
        sandbox = running.sandbox
        await page.goto(running.url)
        assert "Sandbox" in await page.inner_text("#sandbox-banner")
        assert await page.input_value("#mobile_number") == app.SANDBOX_MOBILE

        # Wrong inputs: the form comes back with each error next to its field.
        await page.fill("#client_reference", "client-7")
        await page.fill("#mobile_number", "0612345678")
        await page.set_input_files("#document", pdf_file("notes.pdf", b"just some text"))
        await page.click("#start")
        await page.wait_for_selector("#mobile_number-error")
        assert "+31612345678" in await field_error(page, "mobile_number")
        assert await field_error(page, "document") == "This file is not a PDF; choose a PDF file."
        assert await page.input_value("#client_reference") == "client-7"  # kept
        assert await page.input_value("#mobile_number") == "0612345678"
        text = await page.content()
        assert "Error" not in text
        assert "Traceback" not in text
        assert not running.app.flows  # nothing started

        # Right inputs: the progress page comes at once, though the service is slow now.
        sandbox.inject_fault("slow", route="create_workflow", times=1, delay=2.0)
        await page.fill("#mobile_number", MOBILE)
        await page.set_input_files("#document", pdf_file("My contract.pdf", own_pdf))
        began = time.monotonic()
        await page.click("#start")
        await page.wait_for_selector("#progress")
        assert time.monotonic() - began < 1.5
        # Shown while the service still holds create_workflow: the POST did not wait for it.
        assert not [r for r in sandbox.request_log if r.route == "create_workflow"]
        assert "/flows/" in page.url
        assert "Preparing your document" in await page.inner_text("#status")

        await page.wait_for_url("**/consent")  # the progress page moved on by itself
        assert time.monotonic() - began >= 2.0  # only after the slow create_workflow
        documents = await page.locator("li.document").all_inner_texts()
        assert documents == ["My contract.pdf (my-contract.pdf)"]
        conditions = await page.locator("li.condition a").all_inner_texts()
        assert conditions == ["InfoCert QTSP terms and conditions", "InfoCert privacy notice"]
        flow_id = page.url.split("/flows/")[1].split("/")[0]
        await page.click("#approve")

        await page.wait_for_url("**/passcode")
        right = await page.inner_text("#sandbox-passcode")
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
        name, signed = await download(page, "a.download")
        assert name == "my-contract.pdf"
        assert await page.inner_text("#contract") == "the InfoCert contract"
        contract_name, contract = await download(page, "#contract")  # InfoCert gives one
        assert contract_name == f"{signature_id}-infocert-contract.pdf"
        await page.click("#start-again")
        await page.wait_for_selector("#start")

    assert_signed_pdf(signed)
    assert contract.startswith(b"%PDF-")
    # The sandbox signed the very bytes uploaded: its signed PDF appends to them.
    assert signed.startswith(own_pdf[: own_pdf.rindex(b"%%EOF")])
    confirms = [
        r.status
        for r in sandbox.request_log
        if r.route == "confirm_signature" and r.signature_id == signature_id
    ]
    assert confirms == [409, 200]  # the wrong passcode, then the right one


async def test_a_too_large_pdf_then_the_sample_then_decline_and_start_again(
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright

    app = load_example()
    async with (
        app.serve_sandbox(tmp_path / "signed") as running,
        async_playwright() as pw,
        browser_page(pw) as page,
    ):
        running.app.max_pdf_size = 4096
        await page.goto(running.url)
        big = make_pdf("Too long\n" + "x" * 6000)
        assert len(big) > 4096
        await page.set_input_files("#document", pdf_file("big.pdf", big))
        await page.click("#start")
        error = await field_error(page, "document")
        assert error == "The PDF is larger than 4 KB; choose a smaller one."
        assert not running.app.flows

        # No file chosen: the bundled sample is signed.
        await page.click("#start")
        await page.wait_for_url("**/consent")
        documents = await page.locator("li.document").all_inner_texts()
        assert documents == ["Loan agreement (sample) (sample-loan-agreement.pdf)"]
        await page.click("#decline")
        await page.wait_for_url("**/done")
        assert await page.inner_text("h1") == "Declined"
        assert await page.inner_text("#outcome") == "You declined: nothing was signed."
        assert "Sandbox" in await page.inner_text("#sandbox-banner")
        await page.click("#start-again")
        await page.wait_for_selector("#start")
        assert page.url.rstrip("/") == running.url
    (view,) = running.app.flows.values()
    assert view.task.result().outcome.value == "declined"
