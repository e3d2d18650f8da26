"""``python -m benchmarks [--quick] [--only N ...]``: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from ._common import Row, format_table, quiet_logs

MODULES = (
    "bench_overhead",
    "bench_requests",
    "bench_scale",
    "bench_streaming",
    "bench_webhooks",
    "bench_import",
    "bench_leaks",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--only", nargs="*", type=int, default=[], help="benchmark numbers to run (1-7)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile each benchmark run and print its own time grouped by package",
    )
    args = parser.parse_args(argv)
    quiet_logs()
    rows: list[Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    for number, name in enumerate(MODULES, start=1):
        if args.only and number not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            if args.profile:
                import cProfile

                from ._profile import grouped

                profile = cProfile.Profile()
                rows.extend(profile.runcall(module.run, args.quick))
                print(f"[{name}: profile, own time by package]\n{grouped(profile)}", flush=True)
            else:
                rows.extend(module.run(args.quick))
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    print(format_table(rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s{' (quick)' if args.quick else ''}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
