"""The ``qes-async`` command: demo, sign, resume, status, download, sandbox.

Expected failures print one line and exit with a documented code (see ``EXIT_CODES``);
``--verbose`` turns on the SDK's debug log and shows tracebacks of unexpected errors;
``--json`` prints machine-readable results.  Subcommands import what they need lazily.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from .._core.errors import (
    FlowNotFoundError,
    InvalidInputError,
    KYCRequiredError,
    OutcomeUnknownError,
    QESError,
    RequestNotSentError,
    ServiceError,
)
from .._core.redact import Secret

__all__ = ["EXIT_CODES", "main"]

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DECLINED = 3
EXIT_KYC_REQUIRED = 4
EXIT_SERVICE_REFUSED = 5
EXIT_NETWORK = 6
EXIT_INVALID_INPUT = 7
EXIT_EVIDENCE_MISMATCH = 8
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (for flows: signed)",
    EXIT_UNEXPECTED: "unexpected error: a bug (rerun with --verbose for the traceback)",
    EXIT_USAGE: "bad command line, configuration or local precondition (store, output "
    "folder, terminal, trust roots, an extra to install); nothing was sent",
    EXIT_DECLINED: "the signer declined",
    EXIT_KYC_REQUIRED: "kyc_required: a workflow with identity verification is needed",
    EXIT_SERVICE_REFUSED: "the service refused, or the flow failed for good",
    EXIT_NETWORK: "the service could not be reached, or the outcome is unknown",
    EXIT_INVALID_INPUT: "invalid input (phone number, document, passcode...)",
    EXIT_EVIDENCE_MISMATCH: "evidence --verify: the record does not verify (an entry, their "
    "order, a byte of the file or a signed document changed)",
    EXIT_INTERRUPTED: "interrupted (Ctrl+C); a started flow can be resumed",
}

#: Environment variables and what they configure (their names in error messages).
_ENV_OF_FIELD = {
    "client_id": "QES_CLIENT_ID",
    "client_secret": "QES_CLIENT_SECRET",
    "base_url": "QES_BASE_URL",
    "environment": "QES_ENVIRONMENT",
}
TRUST_ROOTS_ENV = "QES_TRUST_ROOTS"

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CLIError(Exception):
    """An expected failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, text: str, data: Any = None) -> None:
    """Print a human line, or (with --json) nothing: JSON results go through emit_json."""
    if not getattr(args, "json", False):
        print(text, flush=True)


def emit_json(args: argparse.Namespace, data: Any) -> None:
    """Print one JSON document when --json was given."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=str), flush=True)


def routes_from(args: argparse.Namespace | None) -> Any:
    """The route table in effect: ``--routes FILE``, else ``$QES_ROUTES``, else defaults."""
    from .._client.routes import ROUTES_ENV, Routes

    path = getattr(args, "routes", None) or os.environ.get(ROUTES_ENV)
    return Routes.from_file(path) if path else Routes()


def client_from_env(args: argparse.Namespace | None = None) -> Any:
    """A QESClient configured from QES_CLIENT_ID, QES_CLIENT_SECRET and QES_BASE_URL or
    QES_ENVIRONMENT (sandbox | production), with the routes of ``--routes``/QES_ROUTES."""
    from .._client.client import QESClient

    client_id = os.environ.get("QES_CLIENT_ID")
    secret = os.environ.get("QES_CLIENT_SECRET")
    if not client_id or not secret:
        raise CLIError(
            "set QES_CLIENT_ID and QES_CLIENT_SECRET (and QES_BASE_URL or QES_ENVIRONMENT)"
        )
    base_url = os.environ.get("QES_BASE_URL")
    environment = None if base_url else os.environ.get("QES_ENVIRONMENT")  # the URL wins
    if not base_url and not environment:
        raise CLIError("set QES_BASE_URL or QES_ENVIRONMENT (sandbox or production)")
    try:
        routes = routes_from(args)
    except InvalidInputError as exc:
        raise CLIError(f"the route file cannot be used: {exc}") from None
    try:
        return QESClient(
            client_id, secret, base_url=base_url, environment=environment, routes=routes
        )
    except InvalidInputError as exc:
        name = _ENV_OF_FIELD.get(exc.field, exc.field)
        what = exc.message.removeprefix(exc.field + ":").strip().rstrip(".")
        raise CLIError(f"{name} {what}. {exc.advice}".strip()) from None


# ---------------------------------------------------------------------------- commands

DEMO_SCENARIOS = ("happy", "selfie", "wrong-passcode", "expiry", "pending-verification", "kyc")
DEFAULT_STORE = "qes-flows.sqlite3"


async def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .._flow.driver import FlowOutcome
    from .demo import run_demo

    _need_extra("pyhanko", "sandbox", "the demo signs with the sandbox")
    quiet = bool(args.json)
    outcome, _, summary = await run_demo(
        args.scenario,
        webhooks=args.webhooks,
        out_dir=Path(args.output),
        out=(lambda _line: None) if quiet else print,
    )
    emit_json(args, {"scenario": args.scenario, **summary})
    if outcome is FlowOutcome.KYC_REQUIRED:
        return EXIT_KYC_REQUIRED
    if not quiet:
        print(
            f"\nsignature {summary['signature_id']}: {outcome.value} "
            f"after {summary['generations']} workflow(s), {summary['requests']} requests"
        )
        _print_files(summary)
    return EXIT_OK if outcome is FlowOutcome.SIGNED else EXIT_DECLINED


def _print_files(summary: dict[str, Any]) -> None:
    for item in summary["documents"]:
        print(f"  {item['path']}\n    sha256 {item['sha256']}  {_mb(item['size'])}")
        if item["signer"]:
            print(f"    signed by {item['signer']}: signature {item['validation']}")
        else:
            print(f"    signature {item['validation']}")
    contract = summary.get("contract")
    if contract:
        print(f"  {contract['path']}  (InfoCert contract)\n    sha256 {contract['sha256']}")
    evidence = summary.get("evidence")
    if evidence:
        folder = Path(evidence).parent
        print(f"  {evidence}  (evidence record)")
        print(f"    check it: qes-async evidence --verify {evidence} --documents {folder}")


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def _need_extra(module: str, extra: str, why: str) -> None:
    """Refuse before anything starts when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CLIError(
            f"{why}, which needs the {extra} extra. "
            f"Install it with: pip install 'qes-async[{extra}]'"
        )


def _flow_options(args: argparse.Namespace) -> dict[str, Any]:
    from .._runtime.clock import SystemClock
    from .demo import Progress

    progress = Progress(SystemClock(), print, simulated=False)
    options: dict[str, Any] = {"download_dir": args.output}
    if not args.json:
        options["on_event"] = progress
    roots = _trust_roots(args)
    if roots:
        options["trust_roots"] = roots
    return options


def _trust_roots(args: argparse.Namespace) -> list[bytes]:
    """The CA certificates of ``--trust-roots`` (or $QES_TRUST_ROOTS), checked now."""
    path = getattr(args, "trust_roots", None) or os.environ.get(TRUST_ROOTS_ENV)
    if not path:
        return []
    _need_extra("pyhanko", "pdf", "checking the signed documents against --trust-roots")
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CLIError(
            f"--trust-roots {path!r} cannot be read ({exc.strerror or type(exc).__name__}). "
            "Pass a PEM file of CA certificates."
        ) from None
    marker = b"-----BEGIN CERTIFICATE-----"
    blocks = [marker + part for part in data.split(marker)[1:]]
    if not blocks and data[:1] == b"\x30":
        blocks = [data]  # one DER certificate
    try:
        from cryptography import x509

        for block in blocks:
            if block.startswith(marker):
                x509.load_pem_x509_certificate(block)
            else:
                x509.load_der_x509_certificate(block)
    except ImportError:
        pass
    except ValueError:
        blocks = []
    if not blocks:
        raise CLIError(
            f"--trust-roots {path!r} holds no certificate. "
            "Pass a PEM file of CA certificates (for the sandbox: its /_sandbox/ca.pem)."
        )
    return blocks


async def _finish_flow(args: argparse.Namespace, flow: Any) -> int:
    from .._flow.driver import FlowOutcome

    args.started_flow = flow.flow_id  # for the resume command printed on Ctrl+C
    try:
        result = await flow.run()
    except QESError as exc:
        outcome = "kyc_required" if isinstance(exc, KYCRequiredError) else "failed"
        emit_json(
            args,
            {
                "flow_id": flow.flow_id,
                "outcome": outcome,
                "signature_id": getattr(getattr(exc, "report", None), "signature_id", None),
                "documents": [],
                "contract": None,
                "error": str(exc),
            },
        )
        raise
    summary = result.as_json()
    emit(args, f"\nflow {result.flow_id}: {result.outcome.value} (signature {result.signature_id})")
    if not args.json and (summary["documents"] or summary["contract"]):
        _print_files(summary)
    emit_json(args, summary)
    # A resumed flow that had already ended returns its stored outcome instead of raising.
    return {
        FlowOutcome.SIGNED: EXIT_OK,
        FlowOutcome.DECLINED: EXIT_DECLINED,
        FlowOutcome.KYC_REQUIRED: EXIT_KYC_REQUIRED,
        FlowOutcome.FAILED: EXIT_SERVICE_REFUSED,
    }[result.outcome]


async def _check_output(folder: str) -> None:
    """The output folder exists or can be made, and takes a file."""
    from .._flow.driver import check_download_dir

    try:
        await asyncio.to_thread(check_download_dir, Path(folder))
    except InvalidInputError as exc:
        raise CLIError(
            f"--output {folder!r} cannot take the signed documents. "
            "Pass a writable folder with --output (it is created if missing)."
        ) from exc


async def _open_store(path: str, *, must_exist: bool) -> Any:
    """The SQLite flow store, opened (and, for a new flow, created) before any request."""
    import sqlite3

    from .._flow.store import SQLiteFlowStore

    if must_exist and not await asyncio.to_thread(Path(path).is_file):
        raise CLIError(
            f"there is no flow store at {path!r}. Pass the --store file that `qes-async sign` used."
        )
    store = SQLiteFlowStore(path)
    try:
        await store.__aenter__()
    except (sqlite3.Error, OSError) as exc:
        await store.close()
        raise CLIError(
            f"--store {path!r} cannot be used as a flow store ({type(exc).__name__}). "
            "Pass a SQLite file that qes-async created, or a new file name."
        ) from None
    return store


def _resume_command(args: argparse.Namespace, flow_id: str) -> str:
    return f"qes-async resume {flow_id} --store {args.store} --output {args.output}"


class _AnswersSigner:
    """The signer of the command line: the terminal, or the answers given as options
    (``--consent``, ``--passcode-from``, ``--selfie``) where there is no terminal."""

    def __init__(self, args: argparse.Namespace) -> None:
        from .._signers.prompt import LineReader
        from .._signers.signer import TerminalSigner

        self._terminal = TerminalSigner()
        self._consent: str | None = args.consent
        self._passcode_from: str | None = args.passcode_from
        self._selfie: str | None = args.selfie
        self._stdin = LineReader()
        self._last: Secret | None = None  # the passcode last tried, held masked

    async def consent(self, request: Any) -> bool:
        if self._consent is None:
            return await self._terminal.consent(request)
        names = ", ".join(d.display_name or d.file_name for d in request.documents)
        print(f"consent given by --consent {self._consent}: {names}", file=sys.stderr)
        return self._consent == "yes"

    async def passcode(self, request: Any) -> str | Secret:
        if self._passcode_from is None:
            return await self._terminal.passcode(request)
        if self._passcode_from == "-":
            return (await self._stdin.read("")).strip()
        return await self._from_file(self._passcode_from, request.deadline)

    async def _from_file(self, path: str, deadline: float) -> Secret:
        """Wait for the file to hold a passcode other than the one last tried."""
        import time

        print(f"waiting for the passcode in {path}", file=sys.stderr)
        while True:
            # Held masked while this waits: the file keeps the last try until it changes.
            try:
                text = Secret((await asyncio.to_thread(Path(path).read_text)).strip())
            except OSError:
                text = Secret("")
            if text and text != self._last:
                self._last = text
                return text
            if time.time() > deadline:
                raise CLIError(f"no new passcode appeared in {path} before the deadline.")
            await asyncio.sleep(0.5)

    async def selfie(self, request: Any) -> bytes:
        if self._selfie is None:
            return await self._terminal.selfie(request)
        return await asyncio.to_thread(Path(self._selfie).read_bytes)

    async def acknowledge(self, request: Any, answer: Any) -> None:
        await self._terminal.acknowledge(request, answer)


def _signer(args: argparse.Namespace) -> _AnswersSigner:
    """The answer sources, checked before anything is sent."""
    from .._signers.prompt import has_terminal

    if not has_terminal() and (args.consent is None or args.passcode_from is None):
        raise CLIError(
            "there is no terminal to ask the signer on. Pass --consent yes and "
            "--passcode-from FILE (or - to read standard input), or run it in a terminal."
        )
    if args.passcode_from not in (None, "-"):
        folder = Path(args.passcode_from).expanduser().parent
        if not folder.is_dir():
            raise CLIError(
                f"--passcode-from {args.passcode_from!r}: its folder does not exist. "
                "Pass a file in an existing folder, or - for standard input."
            )
    if args.selfie is not None:
        try:
            head = Path(args.selfie).expanduser().read_bytes()[:3]
        except OSError:
            head = b""
        if head != b"\xff\xd8\xff":
            raise CLIError(f"--selfie {args.selfie!r} is not a readable JPEG. Pass a JPEG file.")
    return _AnswersSigner(args)


async def cmd_sign(args: argparse.Namespace) -> int:
    from .._client.documents import Document
    from .._flow.driver import SignatureFlow

    documents = [Document.from_path(path) for path in args.document]
    # Every local precondition before the first request: once the client types the SMS
    # code the signature is done, far too late to find the output folder unusable.
    await _check_output(args.output)
    options = _flow_options(args)
    signer = _signer(args)
    store = await _open_store(args.store, must_exist=False)
    try:
        async with client_from_env(args) as client:
            flow = SignatureFlow(
                client,
                documents=documents,
                mobile_number=args.mobile,
                client_reference=args.client_reference,
                signer=signer,
                store=store,
                language=args.language,
                workflow_name=args.workflow_name or os.environ.get("QES_WORKFLOW_NAME") or "qes",
                **options,
            )
            emit(
                args,
                f"flow {flow.flow_id}: documents go to {Path(args.output) / flow.flow_id}; "
                f"resume with: {_resume_command(args, flow.flow_id)}",
            )
            return await _finish_flow(args, flow)
    finally:
        await store.close()


async def cmd_resume(args: argparse.Namespace) -> int:
    from .._client.documents import Document
    from .._flow.driver import SignatureFlow

    await _check_output(args.output)
    options = _flow_options(args)
    store = await _open_store(args.store, must_exist=True)
    try:
        signer = _signer(args)
    except CLIError:
        await store.close()
        raise
    try:
        try:
            await store.load(args.flow_id)
        except FlowNotFoundError:
            raise CLIError(
                f"there is no flow {args.flow_id!r} in {args.store!r}. "
                f"List the stored flows with: qes-async flows --store {args.store}"
            ) from None
        documents = [Document.from_path(path) for path in args.document]
        async with client_from_env(args) as client:
            flow = await SignatureFlow.resume(
                args.flow_id,
                client=client,
                store=store,
                signer=signer,
                documents=documents,
                **options,
            )
            return await _finish_flow(args, flow)
    finally:
        await store.close()


async def cmd_status(args: argparse.Namespace) -> int:
    async with client_from_env(args) as client:
        report = await client.get_signature_status(args.signature_id)
        try:
            details = await client.get_signature_details(args.signature_id)
            documents = [
                {
                    "document_id": d.document_id,
                    "file_name": d.file_name,
                    "display_name": d.display_name,
                }
                for d in details.documents
            ]
        except ServiceError:
            documents = []  # the details are not available in every status
    code = f" (status code {report.status_code})" if report.status_code is not None else ""
    emit(args, f"{report.signature_id}: {report.status.value}{code}")
    for doc in documents:
        emit(args, f"  document {doc['document_id']}  {doc['file_name']}")
    if documents and report.status.value == "signed":
        emit(args, f"download one with: qes-async download {report.signature_id} DOCUMENT_ID")
    emit_json(
        args,
        {
            "signature_id": report.signature_id,
            "status": report.status.value,
            "status_code": report.status_code,
            "request_id": report.request_id,
            "documents": documents,
        },
    )
    return EXIT_OK


async def cmd_download(args: argparse.Namespace) -> int:
    await _check_output(args.output)
    async with client_from_env(args) as client:
        doc = await client.download_signed_document(
            args.signature_id, args.document_id, args.output
        )
    emit(args, f"saved {doc.path} ({_mb(doc.size)}, sha256 {doc.sha256})")
    emit_json(
        args,
        {
            "signature_id": args.signature_id,
            "document_id": doc.document_id,
            "path": str(doc.path),
            "sha256": doc.sha256,
            "size": doc.size,
        },
    )
    return EXIT_OK


async def cmd_evidence(args: argparse.Namespace) -> int:
    """Export a stored flow's evidence record, or verify an exported one."""
    if (args.flow_id is None) == (args.verify is None):
        raise CLIError("give a FLOW_ID to export, or --verify FILE to check (not both)")
    if args.verify is not None:
        return await _verify_evidence(args)
    if args.documents is not None:
        raise CLIError("--documents goes with --verify FILE")
    from .._flow.evidence import Evidence
    from .._flow.state import StateFormatError, parse_state

    store = await _open_store(args.store, must_exist=True)
    try:
        try:
            stored = await store.load(args.flow_id)
        except FlowNotFoundError:
            raise CLIError(
                f"there is no flow {args.flow_id!r} in {args.store!r}. "
                f"List the stored flows with: qes-async flows --store {args.store}"
            ) from None
    finally:
        await store.close()
    try:
        state = parse_state(stored.data)
    except StateFormatError as exc:
        raise CLIError(f"flow {args.flow_id!r} cannot be read: {exc}") from None
    text = Evidence(state.flow_id, state.evidence).to_json()
    if args.output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return EXIT_OK
    try:
        await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
    except OSError as exc:
        raise CLIError(
            f"--output {args.output!r} cannot be written ({exc.strerror or type(exc).__name__})"
        ) from None
    print(
        f"wrote the evidence of flow {state.flow_id} to {args.output} "
        f"({len(state.evidence)} entries)",
        file=sys.stderr,
    )
    return EXIT_OK


async def _verify_evidence(args: argparse.Namespace) -> int:
    from .._flow.evidence import Evidence, EvidenceFormatError

    path = Path(args.verify)
    folder = Path(args.documents) if args.documents is not None else None
    if folder is not None and not await asyncio.to_thread(folder.is_dir):
        raise CLIError(f"--documents {args.documents!r} is not a folder")
    try:
        raw = await asyncio.to_thread(_read_bounded, path, 64 * 1024 * 1024)
    except OSError as exc:
        raise CLIError(
            f"--verify {args.verify!r} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        record = Evidence.from_json(raw)
    except EvidenceFormatError as exc:
        emit_json(args, {"ok": False, "problems": [{"where": "record", "detail": str(exc)}]})
        print(f"evidence {path}: does not verify: {exc}", file=sys.stderr)
        return EXIT_EVIDENCE_MISMATCH
    check = await asyncio.to_thread(record.verify, folder)
    emit_json(args, {"file": str(path), **check.as_json()})
    if check.ok:
        files = f", {check.files_checked} file(s) match" if folder is not None else ""
        emit(
            args,
            f"evidence {path}: verifies ({check.entries} entries{files}; "
            f"final hash {check.final_hash})",
        )
        return EXIT_OK
    print(f"evidence {path}: does not verify:", file=sys.stderr)
    for problem in check.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_EVIDENCE_MISMATCH


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(0, f"larger than {limit} bytes")
    return data


async def cmd_flows(args: argparse.Namespace) -> int:
    """List the stored flows: where each stands and what it waits for."""
    import datetime

    from .._flow.state import parse_state

    store = await _open_store(args.store, must_exist=True)
    try:
        rows = await store.list_flows(limit=args.limit)
    finally:
        await store.close()

    def when(instant: float | None) -> str | None:
        if instant is None:
            return None
        moment = datetime.datetime.fromtimestamp(instant, tz=datetime.timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")

    flows = []
    for row in rows:
        state = parse_state(row.data)
        gen = state.generations[-1] if state.generations else None
        flows.append(
            {
                "flow_id": state.flow_id,
                "signature_id": gen.signature_id if gen else None,
                "step": state.step.value,
                "status": gen.last_status if gen else None,
                "next_deadline": when(state.next_deadline()),
                "outcome": state.outcome,
                "updated": when(row.updated_at),
            }
        )
    if not args.json:
        if not flows:
            print(f"no flows in {args.store}")
        columns = ("flow_id", "signature_id", "step", "status", "next_deadline", "outcome")
        widths = [max([len(c), *(len(str(f[c] or "-")) for f in flows)]) for c in columns]
        if flows:
            print(
                "  ".join(
                    c.upper().replace("_", " ").ljust(w)
                    for c, w in zip(columns, widths, strict=True)
                )
            )
        for f in flows:
            print(
                "  ".join(str(f[c] or "-").ljust(w) for c, w in zip(columns, widths, strict=True))
            )
    emit_json(args, {"store": args.store, "flows": flows})
    return EXIT_OK


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug log and tracebacks")


def _add_routes_option(*parsers: argparse.ArgumentParser) -> None:
    for parser in parsers:
        parser.add_argument(
            "--routes", metavar="FILE", help="route file (.toml or .json); default $QES_ROUTES"
        )


async def cmd_routes(args: argparse.Namespace) -> int:
    """Print the route table in effect, as a route file to start from."""
    from .._client.routes import ROUTES_ENV
    from .._client.routes_file import file_format

    path = args.routes or os.environ.get(ROUTES_ENV)
    kind = args.format or (file_format(path) if path else "toml")
    print(routes_from(args).to_text(kind), end="", flush=True)
    return EXIT_OK


async def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the configured environment without changing anything; 0 only if all is right."""
    from .doctor_run import run_doctor

    async with client_from_env(args) as client:
        report = await run_doctor(client, timeout=args.timeout)
    emit(args, report.render())
    emit_json(args, report.to_json())
    return EXIT_OK if report.ok else EXIT_SERVICE_REFUSED


def _add_route_commands(sub: Any) -> None:
    routes = sub.add_parser(
        "routes", help="print the route table in effect (defaults or --routes) as a file"
    )
    routes.add_argument(
        "--format", choices=["toml", "json"], help="default: the --routes file's, else toml"
    )
    _add_common(routes)
    _add_routes_option(routes)
    routes.set_defaults(handler=cmd_routes)

    doctor = sub.add_parser(
        "doctor",
        help="check host, TLS, credentials and every route, changing nothing at the service",
    )
    doctor.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per step and probe (default 10)"
    )
    _add_common(doctor)
    _add_routes_option(doctor)
    doctor.set_defaults(handler=cmd_doctor)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line; the sandbox's options are added only when ``sandbox`` is asked for
    (they import the whole sandbox, which the other commands never use)."""
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="qes-async",
        description="Qualified electronic signatures with Fourthline, from the command line.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"qes-async {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sign, resume = _add_signing_commands(sub)
    _add_store_commands(sub)
    status, download = _add_direct_commands(sub, argv)
    _add_routes_option(sign, resume, status, download)
    _add_route_commands(sub)
    return parser


def _add_signing_commands(sub: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """``demo``, ``sign`` and ``resume``: the commands that run a ceremony."""
    demo = sub.add_parser("demo", help="sign a PDF against the embedded sandbox, in seconds")
    demo.add_argument(
        "--scenario",
        choices=list(DEMO_SCENARIOS),
        default="happy",
        help="which path of the ceremony to show (default: happy)",
    )
    demo.add_argument("--webhooks", action="store_true", help="wait through webhooks")
    demo.add_argument("--output", "-o", default="signed", help="folder (default ./signed)")
    _add_common(demo)
    demo.set_defaults(handler=cmd_demo)

    sign = sub.add_parser("sign", help="sign documents against a real environment")
    sign.add_argument("--document", "-d", action="append", required=True, help="a PDF")
    sign.add_argument("--mobile", required=True, help="the signer's mobile number (E.164)")
    sign.add_argument("--client-reference", required=True, help="your id of the client")
    sign.add_argument("--output", "-o", default="signed", help="folder (default ./signed)")
    sign.add_argument("--store", default=DEFAULT_STORE, help="SQLite file for checkpoints")
    sign.add_argument("--language", default=None, help="language of the legal conditions")
    sign.add_argument(
        "--workflow-name",
        help="the workflow name agreed with Fourthline, exactly "
        "(default: $QES_WORKFLOW_NAME, else qes)",
    )
    _add_common(sign)
    sign.set_defaults(handler=cmd_sign)

    resume = sub.add_parser("resume", help="continue a stored flow after a crash")
    resume.add_argument("flow_id")
    resume.add_argument("--document", "-d", action="append", default=[], help="a PDF")
    resume.add_argument("--output", "-o", default="signed", help="folder (default ./signed)")
    resume.add_argument("--store", default=DEFAULT_STORE, help="SQLite file for checkpoints")
    _add_common(resume)
    resume.set_defaults(handler=cmd_resume)
    for parser_ in (sign, resume):
        parser_.add_argument(
            "--trust-roots",
            metavar="PEM",
            help=f"CA certificates to check the signatures against (default ${TRUST_ROOTS_ENV})",
        )
        parser_.add_argument(
            "--consent",
            choices=["yes", "no"],
            help="the signer's answer, given in advance (needed without a terminal)",
        )
        parser_.add_argument(
            "--passcode-from",
            metavar="FILE",
            help="read the SMS passcode from FILE when it appears, or - for standard input "
            "(needed without a terminal)",
        )
        parser_.add_argument("--selfie", metavar="JPEG", help="the selfie, if one is asked for")

    return sign, resume


def _add_store_commands(sub: Any) -> None:
    """``flows`` and ``evidence``: the commands that read the checkpoint store."""
    flows = sub.add_parser("flows", help="list the stored flows: where each stands")
    flows.add_argument("--store", default=DEFAULT_STORE, help="SQLite file for checkpoints")
    flows.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    _add_common(flows)
    flows.set_defaults(handler=cmd_flows)

    evidence = sub.add_parser(
        "evidence",
        help="export a flow's evidence record, or verify one (--verify FILE)",
        description="Export the evidence record of a stored flow (FLOW_ID), or check an "
        f"exported record (--verify FILE); a record that does not verify exits "
        f"{EXIT_EVIDENCE_MISMATCH}.",
    )
    evidence.add_argument("flow_id", nargs="?", metavar="FLOW_ID")
    evidence.add_argument("--store", default=DEFAULT_STORE, help="SQLite file for checkpoints")
    evidence.add_argument("--output", "-o", default=None, help="file to write (default stdout)")
    evidence.add_argument("--verify", metavar="FILE", help="check an exported record")
    evidence.add_argument(
        "--documents", metavar="DIR", help="with --verify: also check the signed files here"
    )
    _add_common(evidence)
    evidence.set_defaults(handler=cmd_evidence)


def _add_direct_commands(
    sub: Any, argv: Sequence[str]
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """``sandbox``, ``status`` and ``download``: one call, or the sandbox itself."""
    sandbox = sub.add_parser("sandbox", help="serve the sandbox for your own tests and curl")
    if "sandbox" in argv:
        from ..sandbox._standalone import add_arguments as add_sandbox_arguments

        add_sandbox_arguments(sandbox)
    sandbox.add_argument("--verbose", "-v", action="store_true", help="debug log")
    sandbox.set_defaults(handler=None, json=False)

    status = sub.add_parser("status", help="print a signature's status")
    status.add_argument("signature_id")
    _add_common(status)
    status.set_defaults(handler=cmd_status)

    download = sub.add_parser("download", help="download one signed document")
    download.add_argument("signature_id")
    download.add_argument("document_id")
    download.add_argument("--output", "-o", default="signed", help="folder (default ./signed)")
    _add_common(download)
    download.set_defaults(handler=cmd_download)
    return status, download


def _exit_code_for(error: BaseException) -> int:
    if isinstance(error, CLIError):
        return error.code
    if isinstance(error, KYCRequiredError):
        return EXIT_KYC_REQUIRED
    if isinstance(error, InvalidInputError):
        return EXIT_INVALID_INPUT
    if isinstance(error, (RequestNotSentError, OutcomeUnknownError)):
        return EXIT_NETWORK
    if isinstance(error, (ServiceError, QESError)):
        return EXIT_SERVICE_REFUSED
    return EXIT_UNEXPECTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qes-async`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nStart with `qes-async demo`: a whole signature against the embedded sandbox.")
        return EXIT_OK
    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("qes_async").setLevel(logging.DEBUG)
    handler: Handler | None = args.handler
    try:
        if handler is None:  # `sandbox` runs its own event loop until interrupted
            from ..sandbox._standalone import run

            return run(args)
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        flow_id = getattr(args, "started_flow", None) or getattr(args, "flow_id", None)
        if flow_id and getattr(args, "store", None):
            print(
                f"\ninterrupted. The flow is saved; continue it with: "
                f"{_resume_command(args, flow_id)}",
                file=sys.stderr,
            )
        else:
            print("\ninterrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (QESError, CLIError) as error:
        if args.verbose:
            logging.getLogger("qes_async").debug("failure", exc_info=error)
        print(f"error: {error}", file=sys.stderr)
        return _exit_code_for(error)
    except Exception as error:  # the last line of defence: one line, not a traceback
        if args.verbose:
            raise
        print(f"unexpected error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_UNEXPECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
