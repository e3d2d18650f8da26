"""``python -m qes_async.postgres migrate --dsn DSN [--prefix qes_]``: create the tables.

Idempotent: run it at every deploy.  The DSN may also come from ``QES_POSTGRES_DSN`` (so it
stays out of the process list); it is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from ._schema import DEFAULT_PREFIX, SCHEMA_VERSION, migrate

ENV_DSN = "QES_POSTGRES_DSN"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qes_async.postgres", description="qes_async's PostgreSQL schema."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("migrate", help="create missing tables (idempotent)")
    run.add_argument("--dsn", default=os.environ.get(ENV_DSN), help=f"default: ${ENV_DSN}")
    run.add_argument("--prefix", default=DEFAULT_PREFIX, help="table name prefix")
    return parser


async def _migrate(dsn: str, prefix: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, prefix)
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.dsn:
        print(f"error: give --dsn or set {ENV_DSN}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_migrate(args.dsn, args.prefix))
    except Exception as exc:  # the message of a connection error may quote the DSN
        print(f"error: migration failed ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(f"schema {SCHEMA_VERSION} ready (prefix {args.prefix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
