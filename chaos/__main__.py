"""``python -m chaos --flows N [--seed S] [--concurrency C]``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ._harness import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    """Run the chaos flows, print the table; 1 on any miss, duplicate or leak."""
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--flows", type=int, default=2000, help="how many flows (2000)")
    parser.add_argument("--seed", type=int, default=1, help="seeds scenarios and faults (1)")
    parser.add_argument("--concurrency", type=int, default=100, help="flows at once (100)")
    args = parser.parse_args(argv)
    if args.flows < 1:
        parser.error("--flows must be at least 1")
    config = ChaosConfig(flows=args.flows, seed=args.seed, concurrency=args.concurrency)
    print(f"$ python -m chaos --flows {args.flows} --seed {args.seed}", flush=True)
    report = asyncio.run(run_chaos(config))
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
