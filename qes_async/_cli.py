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

from ._errors import (
    InvalidInputError,
    KYCRequiredError,
    OutcomeUnknownError,
    QESError,
    RequestNotSentError,
    ServiceError,
)

__all__ = ["EXIT_CODES", "main"]

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DECLINED = 3
EXIT_KYC_REQUIRED = 4
EXIT_SERVICE_REFUSED = 5
EXIT_NETWORK = 6
EXIT_INVALID_INPUT = 7
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (for flows: signed)",
    EXIT_UNEXPECTED: "unexpected error (rerun with --verbose for the traceback)",
    EXIT_USAGE: "bad command line or missing configuration",
    EXIT_DECLINED: "the signer declined",
    EXIT_KYC_REQUIRED: "kyc_required: a workflow with identity verification is needed",
    EXIT_SERVICE_REFUSED: "the service refused, or the flow failed for good",
    EXIT_NETWORK: "the service could not be reached, or the outcome is unknown",
    EXIT_INVALID_INPUT: "invalid input (phone number, document, passcode...)",
    EXIT_INTERRUPTED: "interrupted",
}

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
    from ._routes import ROUTES_ENV, Routes

    path = getattr(args, "routes", None) or os.environ.get(ROUTES_ENV)
    return Routes.from_file(path) if path else Routes()


def client_from_env(args: argparse.Namespace | None = None) -> Any:
    """A QESClient configured from QES_CLIENT_ID, QES_CLIENT_SECRET and QES_BASE_URL or
    QES_ENVIRONMENT (sandbox | production), with the routes of ``--routes``/QES_ROUTES."""
    from ._client import QESClient

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
    routes = routes_from(args)
    return QESClient(client_id, secret, base_url=base_url, environment=environment, routes=routes)


# ---------------------------------------------------------------------------- commands

DEMO_SCENARIOS = ("happy", "selfie", "wrong-passcode", "expiry", "pending-verification", "kyc")
DEFAULT_STORE = "qes-flows.sqlite3"


async def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._demo import run_demo
    from ._flow import FlowOutcome

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
        for item in summary["files"]:
            print(f"  {item['path']}\n    sha256 {item['sha256']}  {item['size']} bytes")
            if item["signer"]:
                print(f"    signed by {item['signer']}: signature {item['validation']}")
    return EXIT_OK if outcome is FlowOutcome.SIGNED else EXIT_DECLINED


def _flow_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"download_dir": args.output, "on_event": _print_event(args)}


def _print_event(args: argparse.Namespace) -> Any:
    def show(event: Any) -> None:
        if args.json:
            return
        detail = event.status or event.waiting_for or event.reason or event.path or event.outcome
        print(f"{event.kind.value}: {detail}", flush=True)

    return show


async def _finish_flow(args: argparse.Namespace, flow: Any) -> int:
    from ._flow import FlowOutcome

    result = await flow.run()
    files = [
        {"path": d.path, "sha256": d.sha256, "validation": d.validation} for d in result.documents
    ]
    emit(args, f"flow {result.flow_id}: {result.outcome.value}")
    for item in files:
        emit(args, f"  {item['path']}  sha256 {item['sha256']}  ({item['validation']})")
    emit_json(
        args,
        {
            "flowId": result.flow_id,
            "outcome": result.outcome.value,
            "signatureId": result.signature_id,
            "files": files,
        },
    )
    # A resumed flow that had already ended returns its stored outcome instead of raising.
    return {
        FlowOutcome.SIGNED: EXIT_OK,
        FlowOutcome.DECLINED: EXIT_DECLINED,
        FlowOutcome.KYC_REQUIRED: EXIT_KYC_REQUIRED,
        FlowOutcome.FAILED: EXIT_SERVICE_REFUSED,
    }[result.outcome]


async def _check_output(folder: str) -> None:
    """The output folder exists or can be made, and takes a file."""
    from ._flow import check_download_dir

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

    from ._store import SQLiteFlowStore

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


async def cmd_sign(args: argparse.Namespace) -> int:
    from ._documents import Document
    from ._flow import SignatureFlow
    from ._signer import TerminalSigner

    documents = [Document.from_path(path) for path in args.document]
    # Every local precondition before the first request: once the client types the SMS
    # code the signature is done, far too late to find the output folder unusable.
    await _check_output(args.output)
    store = await _open_store(args.store, must_exist=False)
    try:
        async with client_from_env(args) as client:
            flow = SignatureFlow(
                client,
                documents=documents,
                mobile_number=args.mobile,
                client_reference=args.client_reference,
                signer=TerminalSigner(),
                store=store,
                language=args.language,
                workflow_name=args.workflow_name or os.environ.get("QES_WORKFLOW_NAME") or "qes",
                **_flow_options(args),
            )
            emit(args, f"flow {flow.flow_id} (resume with: qes-async resume {flow.flow_id})")
            return await _finish_flow(args, flow)
    finally:
        await store.close()


async def cmd_resume(args: argparse.Namespace) -> int:
    from ._documents import Document
    from ._flow import SignatureFlow
    from ._signer import TerminalSigner

    await _check_output(args.output)
    store = await _open_store(args.store, must_exist=True)
    try:
        async with client_from_env(args) as client:
            flow = await SignatureFlow.resume(
                args.flow_id,
                client=client,
                store=store,
                signer=TerminalSigner(),
                documents=[Document.from_path(path) for path in args.document],
                **_flow_options(args),
            )
            return await _finish_flow(args, flow)
    finally:
        await store.close()


async def cmd_status(args: argparse.Namespace) -> int:
    async with client_from_env(args) as client:
        report = await client.get_signature_status(args.signature_id)
    emit(args, f"{report.signature_id}: {report.status.value} (code {report.status_code})")
    emit_json(
        args,
        {
            "signatureId": report.signature_id,
            "status": report.status.value,
            "statusCode": report.status_code,
            "requestId": report.request_id,
        },
    )
    return EXIT_OK


async def cmd_download(args: argparse.Namespace) -> int:
    async with client_from_env(args) as client:
        doc = await client.download_signed_document(
            args.signature_id, args.document_id, args.output
        )
    emit(args, f"saved {doc.path} ({doc.size} bytes, sha256 {doc.sha256})")
    emit_json(args, {"path": str(doc.path), "sha256": doc.sha256, "size": doc.size})
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
    from ._routes import ROUTES_ENV
    from ._routes_file import file_format

    path = args.routes or os.environ.get(ROUTES_ENV)
    kind = args.format or (file_format(path) if path else "toml")
    print(routes_from(args).to_text(kind), end="", flush=True)
    return EXIT_OK


async def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the configured environment without changing anything; 0 only if all is right."""
    from ._doctor_run import run_doctor

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    sandbox = sub.add_parser("sandbox", help="serve the sandbox for your own tests and curl")
    if "sandbox" in argv:
        from .sandbox._standalone import add_arguments as add_sandbox_arguments

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
    _add_routes_option(sign, resume, status, download)
    _add_route_commands(sub)
    return parser


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
    if args.verbose:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("qes_async").setLevel(logging.DEBUG)
    handler: Handler | None = args.handler
    try:
        if handler is None:  # `sandbox` runs its own event loop until interrupted
            from .sandbox._standalone import run

            return run(args)
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
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
