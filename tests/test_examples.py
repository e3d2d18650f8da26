"""Every example runs against the sandbox: the script, the worker (with a restart)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import register_secret

from qes_async import (
    CallbackSigner,
    ConsentRequest,
    FlowOutcome,
    PasscodeRequest,
    QESClient,
    SQLiteFlowStore,
)
from qes_async.sandbox import SandboxServer, sandbox_ca

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MOBILE = "+31612345678"


def load(name: str) -> ModuleType:
    """Import ``examples/{name}.py`` (examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_example(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
        check=False,
    )


# ------------------------------------------------------------------------------ script


async def test_script_signs_one_document_that_validates(tmp_path: Path) -> None:
    register_secret(MOBILE)
    result = await load("script").main(tmp_path / "out")
    assert result.outcome is FlowOutcome.SIGNED
    (document,) = result.documents
    assert document.validation == "valid"
    assert Path(document.path).parent.parent == tmp_path / "out"
    assert Path(document.path).read_bytes().startswith(b"%PDF-")
    assert b"/ByteRange" in Path(document.path).read_bytes()


def test_script_runs_as_a_program(tmp_path: Path) -> None:
    done = run_example(str(EXAMPLES / "script.py"), str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("signed: signature ")
    assert second.endswith(", valid)")
    assert MOBILE not in done.stdout + done.stderr
    assert len(list((tmp_path / "out").glob("*/contract.pdf"))) == 1


# ------------------------------------------------------------------------------ worker


async def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_worker_resumes_after_a_restart_and_signs_each_job_once(tmp_path: Path) -> None:
    register_secret(MOBILE)
    worker_module = load("worker")
    jobs = worker_module.demo_jobs(3, tmp_path / "docs")
    ids = [job.job_id for job in jobs]
    roots = [sandbox_ca().certificate_pem]
    asked: list[str] = []

    async def never(request: PasscodeRequest) -> str:
        asked.append(request.flow_id)
        await asyncio.Event().wait()  # the signer never types: the worker stops here
        raise AssertionError("unreachable")

    async with (
        SandboxServer() as sandbox,
        QESClient(sandbox.client_id, sandbox.client_secret, base_url=sandbox.url) as client,
        SQLiteFlowStore(tmp_path / "worker.db") as store,
    ):
        first = worker_module.Worker(
            client,
            store,
            CallbackSigner(consent=lambda r: True, passcode=never),
            download_dir=tmp_path / "signed",
            trust_roots=roots,
        )
        queue: asyncio.Queue[object] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        running = asyncio.ensure_future(first.run(queue))
        await _wait_until(lambda: len(asked) == 3)
        running.cancel()  # the worker stops mid-flow, every flow waiting for a passcode
        with pytest.raises(asyncio.CancelledError):
            await running
        assert sorted(await store.unfinished()) == ids
        assert first.results == {}

        consents: list[ConsentRequest] = []

        def consent(request: ConsentRequest) -> bool:
            consents.append(request)
            return True

        def passcode(request: PasscodeRequest) -> str:
            code = sandbox.latest_passcode(request.signature_id)
            register_secret(code)
            return code

        second = worker_module.Worker(
            client,
            store,
            CallbackSigner(consent=consent, passcode=passcode),
            download_dir=tmp_path / "signed",
            trust_roots=roots,
        )
        # job-1 is sent again: it is resumed once, not signed twice.
        await asyncio.wait_for(second.run(await worker_module.feed(jobs[:1])), 30)
        assert await store.unfinished() == []
        log = [r for r in sandbox.request_log if r.processed]

    assert sorted(second.results) == ids
    assert second.skipped == ["job-1"]
    assert second.failures == {}
    assert consents == []  # consent was given before the restart, never asked again
    for result in second.results.values():
        assert result.outcome is FlowOutcome.SIGNED
        assert len(result.generations) == 1
        assert [d.validation for d in result.documents] == ["valid"]
    signatures = {result.signature_id for result in second.results.values()}
    per_route = Counter((r.route, r.signature_id) for r in log)
    assert sum(1 for r in log if r.route == "create_workflow") == 3
    for signature_id in signatures:
        assert per_route["approve_documents", signature_id] == 1
        assert per_route["confirm_signature", signature_id] == 1


def test_worker_runs_as_a_program_against_the_sandbox(tmp_path: Path) -> None:
    worker = str(EXAMPLES / "worker.py")
    done = run_example(worker, "--sandbox", "--jobs", "2", "--out", "signed", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["job-1", "job-2"]
    assert all(": signed (signature " in line for line in lines)
    assert MOBILE not in done.stdout + done.stderr
    assert len(list((tmp_path / "signed").glob("job-*/contract-*.pdf"))) == 2


# ------------------------------------------------------------------------- aiohttp app


async def test_aiohttp_app_runs_as_a_program_and_serves_its_form(tmp_path: Path) -> None:
    import aiohttp

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "aiohttp_app.py"),
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
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            text = await response.text()
        assert '<form method="post" action="/start" enctype="multipart/form-data">' in text
        assert 'id="mobile_number" name="mobile_number" type="tel"' in text
        assert f'value="{MOBILE}"' in text  # the sandbox's sample number, prefilled
    finally:
        child.terminate()
        await child.wait()


async def _follow(http: Any, url: str, flow_page: str) -> tuple[str, str]:
    """Poll the progress page's status until the flow needs a page; open that page."""
    flow_id = flow_page.rstrip("/").split("/flows/")[1].split("/")[0]
    for _ in range(200):
        async with http.get(f"{url}/flows/{flow_id}/status") as response:
            answer = await response.json()
        if answer["next"]:
            async with http.get(f"{url}{answer['next']}") as response:
                return str(response.url), await response.text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"the flow stayed at {answer['status']}")


def _multipart(fields: dict[str, str], pdf: tuple[str, bytes] | None) -> tuple[bytes, str]:
    """A form body as a browser sends it (aiohttp's FormData would %-encode the file name)."""
    boundary = "----form-boundary-7d1"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if pdf is not None:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="document"; '
            f'filename="{pdf[0]}"\r\nContent-Type: application/pdf\r\n\r\n'
        )
        parts.append(head.encode() + pdf[1] + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def _post_start(
    http: Any, url: str, fields: dict[str, str], pdf: tuple[str, bytes] | None = None
) -> tuple[int, str, str]:
    body, content_type = _multipart(fields, pdf)
    headers = {"Content-Type": content_type}
    async with http.post(f"{url}/start", data=body, headers=headers) as response:
        return response.status, str(response.url), await response.text()


async def _start(
    http: Any, url: str, pdf: tuple[str, bytes] | None = None, reference: str = "client-9"
) -> tuple[str, str]:
    fields = {"client_reference": reference, "mobile_number": MOBILE}
    status, where, text = await _post_start(http, url, fields, pdf)
    assert status == 200
    if not where.endswith("/consent"):  # the flow may be there by the time the page is asked
        assert 'id="progress"' in text
        return await _follow(http, url, where)
    return where, text


async def test_aiohttp_app_escapes_what_it_shows(tmp_path: Path) -> None:
    import aiohttp

    from qes_async import make_pdf

    register_secret(MOBILE)
    app = load("aiohttp_app")
    pdf = ("<script>alert(1)</script> & co.pdf", make_pdf("Loan"))
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        where, text = await _start(http, running.url, pdf)
    assert where.endswith("/consent")
    assert "<li class='document'>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co.pdf" in text
    assert "(<code>script-alert-1-script-co.pdf</code>)" in text
    assert "<script>" not in text
    assert MOBILE not in text


async def test_aiohttp_app_offers_no_contract_for_namirial(tmp_path: Path) -> None:
    import aiohttp

    from qes_async.sandbox import IdentityCase

    register_secret(MOBILE)
    app = load("aiohttp_app")
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        running.sandbox.add_client("client-n", IdentityCase(qtsp="namirial"))
        where, text = await _start(http, running.url, reference="client-n")
        assert "Namirial QTSP terms and conditions" in text
        async with http.post(where, data={"decision": "approve"}) as response:
            where, text = await _follow(http, running.url, str(response.url))
        assert where.endswith("/passcode")
        flow_id = where.split("/flows/")[1].split("/")[0]
        signature_id = running.app.flows[flow_id].flow.state.generations[-1].signature_id
        passcode = running.sandbox.latest_passcode(signature_id)
        register_secret(passcode)
        async with http.post(where, data={"passcode": passcode}) as response:
            where, text = await _follow(http, running.url, str(response.url))
        assert where.endswith("/done")
        async with http.get(f"{running.url}/flows/{flow_id}/contract") as response:
            assert response.status == 404
    assert "Outcome: <b>signed</b>" in text
    assert "class='download'" in text
    assert "Certificate contract" not in text
    assert "id='contract'" not in text


async def test_aiohttp_app_progress_page_answers_at_once_and_works_without_script(
    tmp_path: Path,
) -> None:
    import aiohttp

    register_secret(MOBILE)
    app = load("aiohttp_app")
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        running.sandbox.inject_fault("slow", route="create_workflow", times=1, delay=1.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        fields = {"client_reference": "client-9", "mobile_number": MOBILE}
        status, where, text = await _post_start(http, running.url, fields)
        assert loop.time() - began < 0.8  # not held until the slow create_workflow answers
        assert status == 200
        assert where.split("/")[-2] == "flows"
        assert "Preparing your document" in text
        assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in text
        for _ in range(100):  # what a browser without script does: reload the page
            async with http.get(where) as response:
                if str(response.url).endswith("/consent"):
                    break
            await asyncio.sleep(0.05)
        assert str(response.url) == f"{where}/consent"


async def test_aiohttp_app_says_why_a_flow_failed_and_links_back(tmp_path: Path) -> None:
    import aiohttp

    from qes_async.sandbox import IdentityCase

    register_secret(MOBILE)
    app = load("aiohttp_app")
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        running.sandbox.add_client("client-k", IdentityCase(kyc_fail_at="mobile"))
        where, text = await _start(http, running.url, reference="client-k")
    assert where.endswith("/done")
    assert "<h1>Not signed</h1>" in text
    assert (
        "<p id='outcome' class='error'>The document was not signed. Your identity must be "
        "verified again before you can sign.</p>"
    ) in text
    assert "is kyc_required (code 4110)" in text  # the details, folded away
    assert "<a class='button' id='start-again' href='/'>Start again</a>" in text
    assert "Error" not in text  # no exception class names
    assert "Traceback" not in text
    assert MOBILE not in text


async def test_aiohttp_app_refuses_bad_input_before_starting(tmp_path: Path) -> None:
    import aiohttp

    app = load("aiohttp_app")
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        fields = {"client_reference": " ", "mobile_number": "+0 12"}
        status, _, text = await _post_start(http, running.url, fields, ("empty.pdf", b""))
        assert status == 422
        assert not running.app.flows
    assert "id='client_reference-error'>Enter the client reference.</p>" in text
    assert "id='mobile_number-error'>Enter the number with + and the country code" in text
    assert "id='document-error'>The file is empty; choose a PDF.</p>" in text
    assert 'action="/start"' in text  # the form again, not a dead end


async def test_aiohttp_app_shows_no_passcode_outside_sandbox_mode(tmp_path: Path) -> None:
    import aiohttp

    register_secret(MOBILE)
    app = load("aiohttp_app")
    async with app.serve_sandbox(tmp_path) as running, aiohttp.ClientSession() as http:
        running.app.sandbox = None  # as when serving a real environment
        where, _ = await _start(http, running.url)
        async with http.post(f"{where}", data={"decision": "approve"}) as response:
            where, text = await _follow(http, running.url, str(response.url))
        assert where.endswith("/passcode")
    assert "Enter the passcode sent by SMS to +31******678." in text
    assert "SANDBOX" not in text
    assert "sandbox-passcode" not in text
    assert "sandbox-banner" not in text
