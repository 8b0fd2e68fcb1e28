"""`python -m bench.faults`: the fault table for 2 and 4 workers (see `bench.faults`)."""

from __future__ import annotations

import argparse
import sys

from bench.faults import __doc__ as description
from bench.faults.definitions import FAULTS
from bench.faults.market import serve_market
from bench.faults.report import table
from bench.faults.rig import running_rig
from bench.faults.runner import run_fault


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=(description or "").split("\n\n")[0]
    )
    parser.add_argument("--workers", type=int, action="append", help="default: 2 and 4")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="default: all")
    parser.add_argument("--seconds", type=float, help="every fault's length (default: its own)")
    parser.add_argument("--limit", type=int, default=10, help="the market's requests/s")
    parser.add_argument("--serve-market", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_market:
        serve_market(args.serve_market, args.limit)
        return
    rows = []
    with running_rig(args.limit) as rig:
        for workers in args.workers or [2, 4]:
            for name in args.fault or list(FAULTS):
                report = run_fault(rig, FAULTS[name], workers=workers, seconds=args.seconds)
                rows.append(report.row())
                print(" | ".join(report.row()), dict(report.reasons), file=sys.stderr, flush=True)
    print(
        f"market limit {args.limit}/s; jobs: 30 high (POST: side effects), 60 medium (GET), "
        "60 low (half POST, half GET)"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
