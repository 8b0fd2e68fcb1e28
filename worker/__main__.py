"""`python -m worker [--market M ...] [--concurrency N]`: the daemon from `LANES_*` settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lanes.errors import ConfigError
from lanes.settings import load_settings
from markets import load_config
from worker.runner import EXIT_STARTUP, run_worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--market", action="append", help="a market to drain (repeatable)")
    parser.add_argument("--concurrency", type=int, help="jobs at once (LANES_CONCURRENCY)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        config = load_config(settings.config)
    except ConfigError as exc:
        print(f"lanes worker: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return run_worker(settings, config, markets=args.market, concurrency=args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
