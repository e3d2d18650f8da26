"""``qes-async sandbox``: serve the sandbox standalone, for curl and users' own tests.

The lead's CLI calls :func:`add_arguments` and :func:`run`; ``python -m qes_async.sandbox``
calls :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from typing import TextIO

from .._core.errors import InvalidInputError
from .._runtime.clock import Clock, FakeClock, SystemClock
from ._server import SandboxServer
from ._signing import EXTRA_HINT, MissingExtraError

__all__ = ["add_arguments", "main", "run"]

DEFAULT_PROCESSING_DELAY = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sandbox`` command's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=_port, default=0, help="port, 1 to 65535 (default: any free port)"
    )
    parser.add_argument("--client-id", help="accepted client id (default: random)")
    parser.add_argument("--client-secret", help="accepted client secret (default: random)")
    parser.add_argument("--webhook-url", help="POST status changes to URL/{signatureId}")
    parser.add_argument("--webhook-user", help="webhook Basic user (or Bearer AuthUrl user)")
    parser.add_argument("--webhook-password", help="webhook Basic (or AuthUrl) password")
    parser.add_argument(
        "--webhook-auth-url", help="Bearer: fetch a token here with the user and password"
    )
    parser.add_argument(
        "--processing-delay",
        type=float,
        default=DEFAULT_PROCESSING_DELAY,
        help="seconds the service takes to process a call (default: %(default)s)",
    )
    parser.add_argument(
        "--fake-clock",
        action="store_true",
        help="run on a fake clock moved only by POST /_sandbox/clock/advance",
    )
    parser.add_argument("--seed", type=int, help="make ids, passcodes and faults reproducible")
    _add_layout_arguments(parser)
    parser.add_argument("--serve-for", type=float, help=argparse.SUPPRESS)


def _add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that make the sandbox look like another deployment of the API."""
    parser.add_argument(
        "--routes", metavar="FILE", help="serve the route layout of this route file"
    )
    parser.add_argument(
        "--string-status-codes",
        action="store_true",
        help='send statusCode as a numeric string ("1036") in status answers and webhooks',
    )
    parser.add_argument(
        "--workflow-name",
        action="append",
        metavar="NAME",
        help="a workflowName to accept, exactly (repeatable; default: qes)",
    )


def _webhook_auth(
    args: argparse.Namespace,
) -> tuple[tuple[str, str] | None, tuple[str, str, str] | None]:
    if args.webhook_user is None:
        return None, None
    credentials = (args.webhook_user, args.webhook_password or "")
    if args.webhook_auth_url:
        return None, (args.webhook_auth_url, *credentials)
    return credentials, None


def build_server(args: argparse.Namespace) -> SandboxServer:
    """A :class:`SandboxServer` configured from parsed arguments."""
    from .._client.routes import Routes

    clock: Clock = FakeClock() if args.fake_clock else SystemClock()
    basic, bearer = _webhook_auth(args)
    return SandboxServer(
        clock,
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        processing_delay=0.0 if args.fake_clock else args.processing_delay,
        seed=args.seed,
        webhook_url=args.webhook_url,
        webhook_basic=basic,
        webhook_bearer=bearer,
        routes=Routes.from_file(args.routes) if args.routes else None,
        string_status_codes=args.string_status_codes,
        workflow_names=tuple(args.workflow_name or ("qes",)),
    )


def _banner(sandbox: SandboxServer, out: TextIO) -> None:
    url, control = sandbox.url, f"{sandbox.url}/_sandbox/"
    environment = {
        "QES_BASE_URL": url,
        "QES_CLIENT_ID": sandbox.client_id,
        "QES_CLIENT_SECRET": sandbox.client_secret,
    }
    lines = [
        f"qes-async sandbox serving on {url}",
        f"  client_id:     {sandbox.client_id}",
        f"  client_secret: {sandbox.client_secret}",
        f"  clock:         {type(sandbox.clock).__name__}",
        f"  routes:        {', '.join(sorted(sandbox.routes.overrides())) or 'the defaults'}",
        f"  control:       {control} (GET it for the index of control endpoints)",
        "Point the qes-async commands (or your app) at it:",
        "  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items()),
    ]
    try:
        sandbox.ca_pem  # noqa: B018 - made now, so the endpoint below serves it
    except MissingExtraError:
        lines.append(f"Signed documents need the sandbox extra: {EXTRA_HINT}")
    else:
        lines += [
            "Trust its signing CA (new at every start) to validate signed documents:",
            f"  curl -o sandbox-ca.pem {control}ca.pem",
            "  export QES_TRUST_ROOTS=sandbox-ca.pem",
        ]
    lines.append("Press Ctrl+C to stop.")
    print("\n".join(lines), file=out, flush=True)


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    async with build_server(args) as sandbox:
        _banner(sandbox, out)
        if args.serve_for is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.serve_for)
        else:
            await stop.wait()
    print("sandbox stopped", file=out, flush=True)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535, or 0 for any)")
    return port


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Serve until interrupted; the exit status."""
    try:
        asyncio.run(_serve(args, out or sys.stdout))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        port = getattr(args, "port", 0)
        if port:
            hint = f"Is port {port} taken? Pass another --port, or none for any free port."
        else:
            hint = "Check that loopback networking works here."
        print(f"error: cannot serve the sandbox ({exc.strerror or exc}). {hint}", file=sys.stderr)
        return 2
    except InvalidInputError as exc:  # a bad --routes file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qes_async.sandbox [options]``."""
    parser = argparse.ArgumentParser(
        prog="qes-async sandbox", description="Serve the QES sandbox on loopback."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
