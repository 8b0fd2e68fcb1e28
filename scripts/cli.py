"""The `lanes` command line: one console script, a subcommand per operator task.

A user mistake (bad argument, bad setting, bad input line) prints one line
`lanes: error: ...` on standard error and exits 2; a failure while running
(SQS or Redis unreachable) exits 1. Never a traceback for either.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from botocore.exceptions import NoRegionError  # type: ignore[import-untyped]

import markets
from lanes.config import Config
from lanes.errors import ConfigError, LanesError
from lanes.limiter import Limiter
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import Settings, load_settings
from lanes.store import RedisStore
from scripts.api import create_app
from scripts.backfill import id_jobs, window_jobs
from scripts.demo import DemoOptions, run_demo
from scripts.devservices import run_services
from scripts.enqueue import EnqueueTarget, Source, enqueue, file_jobs, spooled_stdin
from scripts.inputs import UsageError, parse_day_or_moment, parse_duration
from scripts.provision import provision
from scripts.replay import ReplayFilter, replay
from scripts.status import render_snapshot, snapshot
from scripts.table import render_table
from scripts.validate import JobValidator
from worker.daemon import serve as worker_main
from worker.queues import QueueName
from worker.sqs import QueueMissing, SqsClient

__all__ = ["build_parser", "main"]

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace, Settings, Config], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    """argparse that raises `UsageError` (one line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _sqs(settings: Settings) -> SqsClient:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None and settings.sqs_endpoint_url:
        region = "us-east-1"  # a local endpoint (moto) accepts any region
    return SqsClient(endpoint_url=settings.sqs_endpoint_url, region=region)


def _markets(args: argparse.Namespace, config: Config) -> list[str]:
    chosen: list[str] = args.market or sorted(config.markets)
    for name in chosen:
        config.market(name)  # ConfigError naming the configured ones
    if not chosen:
        raise ConfigError("no markets configured (add a [markets.NAME] table to the TOML file)")
    return chosen


async def _lane_urls(sqs: SqsClient, names: QueueName) -> tuple[str, str]:
    try:
        return await sqs.queue_url(names.queue), await sqs.queue_url(names.dead_letter)
    except QueueMissing as exc:
        raise UsageError(f"{exc} (run `lanes provision --market {names.market}`)") from None


# --- commands -------------------------------------------------------------------------


async def _provision(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    async with _sqs(settings) as sqs:
        reports = await provision(
            sqs,
            prefix=settings.queue_prefix,
            markets=_markets(args, config),
            policies=config.lanes,
            visibility_timeout=settings.visibility_timeout,
            update=args.update,
        )
    print(render_table(["queue", "state"], [[r.queue, r.state] for r in reports]))
    return 0


def _enqueue_source(args: argparse.Namespace, config: Config, stdin: Path | None) -> Source:
    if args.file is not None:
        return file_jobs(stdin or Path(args.file))
    market = config.market(args.market)
    if args.kind == "collect_orders":
        if args.since is None or args.until is None:
            raise UsageError("--kind collect_orders needs --since and --until")
        since, until = parse_day_or_moment(args.since), parse_day_or_moment(args.until)
        step = parse_duration(args.step) if args.step else None
        return lambda: window_jobs(args.market, market, args.seller, since, until, step)
    if args.kind == "collect_order":
        if args.ids_file is None:
            raise UsageError("--kind collect_order needs --ids-file")
        ids = Path(args.ids_file)
        return lambda: id_jobs(args.market, market, args.seller, ids, args.id_field)
    raise UsageError(
        f"backfill mode makes collect_orders or collect_order jobs, not {args.kind!r} "
        "(write other kinds as JSON lines and use --file)"
    )


async def _enqueue(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    if (args.file is None) == (args.kind is None):
        raise UsageError("give either --file (JSON lines) or --kind (backfill mode)")
    if args.kind is not None and not args.seller:
        raise UsageError("backfill mode needs --seller")
    target = EnqueueTarget(
        settings.queue_prefix, args.market, Lane(args.lane), group_ids=not args.no_group_id
    )
    async with AsyncExitStack() as stack:
        stdin = stack.enter_context(spooled_stdin()) if args.file == "-" else None
        source = _enqueue_source(args, config, stdin)
        validator = await stack.enter_async_context(JobValidator(config, settings, args.market))
        sqs = None if args.dry_run else await stack.enter_async_context(_sqs(settings))
        await enqueue(source, target, validator, sqs, out=sys.stdout)
    return 0


async def _replay(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    config.market(args.market)
    only = ReplayFilter(
        kinds=frozenset(args.kind or ()),
        sellers=frozenset(args.seller or ()),
        reason=args.reason,
        older_than=parse_duration(args.older_than) if args.older_than else None,
        newer_than=parse_duration(args.newer_than) if args.newer_than else None,
    )
    names = QueueName(settings.queue_prefix, args.market, Lane(args.lane))
    async with _sqs(settings) as sqs:
        lane_url, dead_letter_url = await _lane_urls(sqs, names)
        report = await replay(
            sqs,
            dead_letter_url=dead_letter_url,
            lane_url=lane_url,
            only=only,
            max_messages=args.max,
            rate=args.rate,
            dry_run=args.dry_run,
            visibility=args.visibility,
        )
    if args.dry_run:
        rows = [
            [d.kind or "?", d.seller or "?", d.reason, d.attempts, _age(d.age.total_seconds())]
            for d in report.listed
        ]
        print(render_table(["kind", "seller", "reason", "attempts", "age"], rows))
        print(
            f"dry run: would move {len(report.listed)} of {report.examined} examined "
            f"from {names.dead_letter} to {names.queue}"
        )
        return 0
    print(
        f"moved {report.moved} of {report.examined} examined "
        f"from {names.dead_letter} to {names.queue}"
    )
    if report.left_in_dead_letter:
        print(
            f"warning: {report.left_in_dead_letter} moved message(s) could not be deleted "
            "from the dead-letter queue and are in both queues",
            file=sys.stderr,
        )
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{max(0.0, seconds):.0f}s"


async def _status(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    chosen = _markets(args, config)
    clear = args.watch is not None and sys.stdout.isatty() and not args.json
    async with (
        _sqs(settings) as sqs,
        RedisStore(settings.redis_url) as store,
        Limiter(store.client, config.lanes) as limiter,
    ):
        while True:
            state = await snapshot(
                sqs, store.client, limiter, config, prefix=settings.queue_prefix, markets=chosen
            )
            if clear:
                print("\x1b[2J\x1b[H", end="")
            elif args.watch is not None and not args.json:
                print(f"\n{datetime.now(UTC):%H:%M:%S} UTC")
            print(json.dumps(state.as_json()) if args.json else render_snapshot(state), flush=True)
            if args.watch is None:
                return 0
            await asyncio.sleep(args.watch)


async def _api(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    if args.insecure_local and args.host not in _LOOPBACK:
        raise UsageError(f"--insecure-local serves only this machine, not --host {args.host}")
    app = create_app(settings, config, insecure_local=args.insecure_local)
    configure_logging(settings.log_level)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=args.host, port=args.port, log_config=None, access_log=False, lifespan="on"
        )
    )
    where = f"http://{args.host}:{args.port}"
    print(f"lanes api: serving {where} (OpenAPI page at {where}/docs)", file=sys.stderr)
    await server.serve()
    return 0


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _add_api_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    parser = _command(
        commands,
        "api",
        _api,
        "Serve the HTTP API (jobs, per-order collection, job status, health).",
        "  LANES_API_KEYS=change-me lanes api --host 127.0.0.1 --port 8080\n"
        "  lanes api --insecure-local    # no keys: this machine only\n"
        "\nThe OpenAPI page is at /docs. Keys: LANES_API_KEYS (comma-separated or a JSON\n"
        "list), sent as X-API-Key or Authorization: Bearer.\n",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument("--port", type=_positive_int, default=8080, help="default 8080")
    parser.add_argument(
        "--insecure-local", action="store_true", help="serve without API keys (loopback only)"
    )


async def _worker(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    configure_logging(settings.log_level)
    return await worker_main(settings, config, markets=args.market, concurrency=args.concurrency)


# --- the parser -----------------------------------------------------------------------


def _command(
    commands: argparse._SubParsersAction[_Parser],
    name: str,
    run: Command | None,
    summary: str,
    examples: str,
) -> _Parser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def build_parser() -> _Parser:
    parser = _Parser(
        prog="lanes",
        description="Lane-aware SQS workers sharing marketplace API rate limits.",
        epilog="Settings come from LANES_* environment variables (LANES_CONFIG names the "
        "TOML file).\nRun `lanes COMMAND --help` for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    lanes = [lane.value for lane in Lane]

    worker = _command(
        commands,
        "worker",
        _worker,
        "Drain the lane queues until SIGTERM/SIGINT, then finish in-flight work.",
        "  lanes worker\n  lanes worker --market coupang --concurrency 64\n",
    )
    worker.add_argument("--market", action="append", metavar="M", help="repeatable; default all")
    worker.add_argument("--concurrency", type=_positive_int, metavar="N")

    enqueue_parser = _command(
        commands,
        "enqueue",
        _enqueue,
        "Send jobs to a lane queue: JSON lines, or a generated backfill.",
        "  lanes enqueue --market coupang --lane high --file jobs.jsonl\n"
        "  cat jobs.jsonl | lanes enqueue --market naver --lane medium --file -\n"
        "  lanes enqueue --market coupang --lane low --kind collect_orders --seller A0001 \\\n"
        "      --since 2025-01-01 --until 2025-06-30 --step 1d\n"
        "  lanes enqueue --market naver --lane low --kind collect_order --seller S1 \\\n"
        "      --ids-file ids.txt --dry-run\n"
        "\nEvery line is checked before anything is sent; a bad one is reported by its\n"
        "line number and nothing is sent. Backfill jobs carry a stable id, so running\n"
        "the same backfill again is harmless. Naive dates and times are Korean time.\n",
    )
    enqueue_parser.add_argument("--market", required=True, metavar="M")
    enqueue_parser.add_argument("--lane", required=True, choices=lanes)
    enqueue_parser.add_argument("--file", metavar="F", help="JSON lines; - reads standard input")
    enqueue_parser.add_argument(
        "--kind", metavar="K", help="backfill mode: collect_orders or collect_order"
    )
    enqueue_parser.add_argument("--seller", metavar="S", help="backfill mode: the seller")
    enqueue_parser.add_argument("--since", metavar="DATE", help="collect_orders: first day/moment")
    enqueue_parser.add_argument(
        "--until", metavar="DATE", help="collect_orders: last day (included) or end moment"
    )
    enqueue_parser.add_argument(
        "--step", metavar="D", help="collect_orders: window length (default: the market's longest)"
    )
    enqueue_parser.add_argument("--ids-file", metavar="F", help="collect_order: one id per line")
    enqueue_parser.add_argument(
        "--id-field", metavar="NAME", help="collect_order: payload field the id fills"
    )
    enqueue_parser.add_argument("--dry-run", action="store_true", help="print, send nothing")
    enqueue_parser.add_argument(
        "--no-group-id", action="store_true", help="do not set MessageGroupId to the seller"
    )

    replay_parser = _command(
        commands,
        "replay",
        _replay,
        "Move dead-lettered messages back to their lane queue.",
        "  lanes replay --market coupang --lane low --dry-run\n"
        "  lanes replay --market coupang --lane low --kind collect_order --reason timeout\n"
        "  lanes replay --market naver --lane high --max 100 --rate 5 --newer-than 2h\n"
        "\nA message is deleted from the dead-letter queue only after it was sent to the\n"
        "lane queue; its attempt count starts over.\n",
    )
    replay_parser.add_argument("--market", required=True, metavar="M")
    replay_parser.add_argument("--lane", required=True, choices=lanes)
    replay_parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    replay_parser.add_argument("--max", type=_positive_int, metavar="N", help="move at most N")
    replay_parser.add_argument("--rate", type=_positive_float, metavar="R", help="messages/s")
    replay_parser.add_argument("--kind", action="append", metavar="K", help="repeatable")
    replay_parser.add_argument("--seller", action="append", metavar="S", help="repeatable")
    replay_parser.add_argument("--reason", metavar="TEXT", help="reason contains TEXT (any case)")
    replay_parser.add_argument("--older-than", metavar="D", help="dead-lettered at least D ago")
    replay_parser.add_argument("--newer-than", metavar="D", help="dead-lettered at most D ago")
    replay_parser.add_argument(
        "--visibility",
        type=_positive_int,
        default=300,
        metavar="S",
        help="seconds messages stay hidden while the replay looks at them (default 300)",
    )

    provision_parser = _command(
        commands,
        "provision",
        _provision,
        "Create the lane queues and dead-letter queues; safe to run again.",
        "  lanes provision\n  lanes provision --market coupang --market naver\n"
        "  lanes provision --update    # also change queues that differ from the settings\n",
    )
    provision_parser.add_argument("--market", action="append", metavar="M")
    provision_parser.add_argument(
        "--update", action="store_true", help="set the attributes of queues that differ"
    )

    status_parser = _command(
        commands,
        "status",
        _status,
        "Queue depths per market and lane; budget usage per lane.",
        "  lanes status\n  lanes status --json\n  lanes status --watch 2 --market coupang\n",
    )
    status_parser.add_argument("--market", action="append", metavar="M")
    status_parser.add_argument("--json", action="store_true", help="one JSON object per refresh")
    status_parser.add_argument("--watch", type=_positive_float, metavar="SECONDS")

    _add_api_command(commands)
    demo = _command(
        commands,
        "demo",
        None,
        "Run the whole system on this machine (own Redis, moto SQS, market simulators): "
        "a burst with lanes, then the same burst in one FIFO queue.",
        "  lanes demo\n  lanes demo --duration 30 --sellers 100 --workers 2\n"
        "  lanes demo --mode lambda --duration 30\n  make demo\n",
    )
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="length of the burst (default 30)",
    )
    demo.add_argument(
        "--sellers",
        type=_positive_int,
        default=100,
        metavar="N",
        help="sellers in the scheduled collection (default 100)",
    )
    demo.add_argument(
        "--workers",
        type=_positive_int,
        default=3,
        metavar="N",
        help="worker processes (lambda: the event sources' concurrency; default 3)",
    )
    demo.add_argument(
        "--mode",
        choices=["daemon", "lambda"],
        default="daemon",
        help="lanes worker processes, or the Lambda handler behind the emulator",
    )
    demo.add_argument("--no-compare", action="store_true", help="skip the run without lanes")
    services = _command(
        commands,
        "services",
        None,
        "Start Redis, moto SQS and the Coupang and Naver simulators for running lanes by "
        "hand; prints the export lines; Ctrl-C stops them.",
        "  lanes services\n  lanes services --coupang-port 9081 --naver-port 9082\n",
    )
    services.add_argument("--coupang-port", type=_positive_int, default=8081, metavar="PORT")
    services.add_argument("--naver-port", type=_positive_int, default=8082, metavar="PORT")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"lanes: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The `lanes` console script."""
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "coupang_port", None) is not None:  # `services`: no settings needed
            return run_services(args.coupang_port, args.naver_port)
        if args.run is None:  # the demo makes its own settings and services
            return run_demo(
                DemoOptions(
                    duration=args.duration,
                    sellers=args.sellers,
                    workers=args.workers,
                    mode=args.mode,
                    compare=not args.no_compare,
                )
            )
        settings = load_settings()
        config = markets.load_config(settings.config)
        run: Command = args.run
        return asyncio.run(run(args, settings, config))
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except NoRegionError:
        return _fail("no AWS region: set AWS_REGION (or LANES_SQS_ENDPOINT_URL)", EXIT_USAGE)
    except LanesError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    except KeyboardInterrupt:
        if getattr(args, "watch", None) is not None:
            return 0  # Ctrl-C is how `status --watch` ends: quietly
        return _fail("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
