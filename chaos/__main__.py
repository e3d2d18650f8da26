"""``python -m chaos --flows N [--seed S] [--concurrency C] [--plant-duplicates K]``.

Exits 0 only when no flow missed its outcome, no secret leaked, and the independent count
found exactly the planted duplicates (none without ``--plant-duplicates``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ._harness import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    """Run the chaos flows, print the table; 1 on any miss, leak, or duplicate count that
    differs from what was planted."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--flows", type=int, default=2000, help="how many flows (2000)")
    parser.add_argument("--seed", type=int, default=1, help="seeds scenarios and faults (1)")
    parser.add_argument("--concurrency", type=int, default=100, help="flows at once (100)")
    parser.add_argument(
        "--plant-duplicates",
        type=int,
        default=0,
        metavar="K",
        help="send K duplicate unsafe calls through a side door; pass only if all K are found",
    )
    args = parser.parse_args(argv)
    if args.flows < 1:
        parser.error("--flows must be at least 1")
    if args.plant_duplicates < 0:
        parser.error("--plant-duplicates must be 0 or more")
    config = ChaosConfig(
        flows=args.flows,
        seed=args.seed,
        concurrency=args.concurrency,
        plant=args.plant_duplicates,
    )
    planted = f" --plant-duplicates {config.plant}" if config.plant else ""
    print(f"$ python -m chaos --flows {args.flows} --seed {args.seed}{planted}", flush=True)
    report = asyncio.run(run_chaos(config))
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
