"""The `lanes` command line: one console script, a subcommand per operator task.

Conventions (as celery, arq and dramatiq): every command takes `--config`
(else LANES_CONFIG) and `--log-level`; `lanes --version`; a flag means the
same thing in every command, with short forms for the common ones: `-m`
market, `-l` lane, `-f` file, `-c` concurrency, `-s` seller, `-k` kind,
`-n` dry run.

A user mistake (bad argument, bad setting, bad input line) prints one line
`lanes: error: ...` on standard error (one per bad input line) and exits 2; a
failure while running (SQS or Redis unreachable) exits 1. Never a traceback
for either. An unknown `LANES_*` variable is a one-line warning.

A command imports its module when it runs, not before: `lanes worker` needs only the
core install, while `api`, `demo` and `services` need an extra (`EXTRAS`); without it
they print one line naming it and exit 1, before reading any setting.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from botocore.exceptions import NoRegionError  # type: ignore[import-untyped]

import markets
from lanes.errors import ConfigError, LanesError
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import load_settings, unknown_variables
from lanes.store import RedisStore
from lanes.usage import Usage
from markets.config import Config
from markets.simulators import local_ports
from scripts.settings import CliSettings
from scripts.tools.inputs import UsageError, parse_duration
from scripts.tools.table import render_table
from worker.queues import QueueName
from worker.sqs import QueueMissing, SqsClient

if TYPE_CHECKING:  # the commands' modules load when their command runs
    from scripts.tools.backfill import Numbered
    from scripts.tools.enqueue import Source

__all__ = ["EXTRAS", "build_parser", "main"]

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace, CliSettings, Config], Coroutine[Any, Any, int]]

# The extra (pyproject.toml) each command needs beyond the core install, and the modules
# whose presence shows it is installed (looked up, not imported: moto's server runs in a
# child process, and `lanes api --help` need not load FastAPI).
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "api": ("api", ("fastapi", "itsdangerous", "mangum", "uvicorn")),
    "demo": ("demo", ("rich", "matplotlib", "moto", "flask")),
    "services": ("local", ("moto", "flask")),
}
_OWN_PACKAGES = frozenset({"lanes", "markets", "worker", "scripts"})


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


def _sqs(settings: CliSettings) -> SqsClient:
    return SqsClient(endpoint_url=settings.sqs_endpoint_url)


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


async def _provision(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    from scripts.tools.provision import mark_redis, provision

    async with _sqs(settings) as sqs:
        reports = await provision(
            sqs,
            prefix=settings.queue_prefix,
            markets=_markets(args, config),
            visibility_timeout=settings.visibility_timeout,
            update=args.update,
        )
    print(render_table(["queue", "state"], [[r.queue, r.state] for r in reports]))
    print(f"redis slot epochs: {await mark_redis(settings.redis_url)}")
    return 0


def _backfill_source(args: argparse.Namespace, config: Config, ids: Path | None) -> Source:
    """The jobs of a backfill: windows of `--since`..`--until`, or one per id of `--ids-file`."""
    from scripts.tools.backfill import id_jobs, window_jobs
    from scripts.tools.inputs import parse_day_or_moment

    if not args.seller:
        raise UsageError("a backfill needs --seller")
    market = config.market(args.market)
    kind = args.kind or ("collect_order" if args.ids_file is not None else "collect_orders")
    jobs: Callable[[], Iterator[Numbered]]
    if kind == "collect_orders":
        if args.since is None or args.until is None:
            raise UsageError("collect_orders needs --since and --until")
        since, until = parse_day_or_moment(args.since), parse_day_or_moment(args.until)
        step = parse_duration(args.step) if args.step else None
        statuses = [status for status in (args.statuses or "").split(",") if status]
        jobs = partial(window_jobs, args.market, market, args.seller, since, until, step, statuses)
    elif kind == "collect_order":
        if args.statuses:
            raise UsageError("--statuses goes with collect_orders (--since and --until)")
        if ids is None:
            raise UsageError("collect_order needs --ids-file")
        jobs = partial(id_jobs, args.market, market, args.seller, ids, args.id_field)
    else:
        raise UsageError(
            f"a backfill makes collect_orders or collect_order jobs, not {kind!r} "
            "(write other kinds as JSON lines and use `lanes enqueue --file`)"
        )
    return jobs


async def _send_jobs(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    """`lanes enqueue` (JSON lines, or a backfill by its old flags) and `lanes backfill`."""
    from scripts.tools.enqueue import EnqueueTarget, enqueue, file_jobs, readable_twice
    from scripts.tools.validate import JobValidator

    from_file = getattr(args, "file", None)
    backfill = any(value is not None for value in (args.kind, args.since, args.ids_file))
    if from_file is not None and backfill:
        raise UsageError("--file does not go with the backfill options (--kind, --since, ...)")
    if from_file is None and args.command == "enqueue" and not backfill:
        raise UsageError("give --file (JSON lines; - reads standard input)")
    target = EnqueueTarget(
        settings.queue_prefix, args.market, Lane(args.lane), group_ids=not args.no_group_id
    )
    validator = JobValidator(config, args.market)
    with ExitStack() as files:
        if from_file is not None:
            source = file_jobs(*files.enter_context(readable_twice(from_file)))
        else:
            ids = None
            if args.ids_file is not None:
                ids = files.enter_context(readable_twice(args.ids_file))[0]
            source = _backfill_source(args, config, ids)
        if args.dry_run:
            await enqueue(source, target, validator, None, out=sys.stdout)
            return 0
        async with _sqs(settings) as sqs:
            await enqueue(source, target, validator, sqs, out=sys.stdout)
    return 0


async def _replay(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    from scripts.tools.replay import ReplayFilter, replay

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
    if report.came_back:
        reasons = ", ".join(f"{count} x {reason}" for reason, count in report.came_back.items())
        print(
            f"{report.came_back.total()} of them came back to {names.dead_letter} during the "
            f"replay and stay there (the cause is not fixed?): {reasons}"
        )
    if report.arrived:
        print(f"{report.arrived} more dead-lettered during the replay: left for the next run")
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


async def _status(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    from scripts.tools.status import render_snapshot, snapshot

    chosen = _markets(args, config)
    clear = args.watch is not None and sys.stdout.isatty() and not args.json
    async with (
        _sqs(settings) as sqs,
        RedisStore(settings.redis_url) as store,
    ):
        while True:
            state = await snapshot(
                sqs,
                store.client,
                Usage(store.client),
                config,
                prefix=settings.queue_prefix,
                markets=chosen,
                need_redis=True,
            )
            if clear:
                print("\x1b[2J\x1b[H", end="")
            elif args.watch is not None and not args.json:
                print(f"\n{datetime.now(UTC):%H:%M:%S} UTC")
            print(json.dumps(state.as_json()) if args.json else render_snapshot(state), flush=True)
            if args.watch is None:
                return 0
            await asyncio.sleep(args.watch)


async def _api(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    import uvicorn

    from scripts.api.app import create_app

    if args.insecure_local and args.host not in _LOOPBACK:
        raise UsageError(f"--insecure-local serves only this machine, not --host {args.host}")
    app = create_app(settings, config, insecure_local=args.insecure_local)
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


async def _schedule(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    from scripts.tools.schedule import run  # lazy: only this command needs it

    async with _sqs(settings) as sqs, RedisStore(settings.redis_url) as store:
        return await run(args, settings, config, store=store, sqs=sqs)


async def _pause(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    """`lanes pause` and `lanes resume`: the lane's flag that workers (and the board) read."""
    from worker.pauses import LanePauses

    config.market(args.market)
    lane = Lane(args.lane)
    by = args.by or os.environ.get("USER") or "cli"
    async with RedisStore(settings.redis_url) as store:
        pauses = LanePauses(store.client)
        if args.command == "pause":
            record = await pauses.pause(args.market, lane, by=by)
            print(f"paused {args.market} {lane.value} (by {by} at {record['at']}): workers stop "
                  "receiving its messages within about a second")  # fmt: skip
        elif await pauses.resume(args.market, lane, by=by):
            print(f"resumed {args.market} {lane.value}")
        else:
            print(f"{args.market} {lane.value} was not paused")
    return 0


def _add_pause_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    for name, summary in (
        ("pause", "Pause a lane of a market: workers stop receiving its messages."),
        ("resume", "Resume a paused lane of a market."),
    ):
        parser = _command(
            commands, name, _pause, summary,
            f"  lanes {name} -m coupang -l low\n  lanes {name} -m naver -l medium --by alice\n"
            "\nThe flag is in Redis (who and when); the board shows it and sets it too.\n",
        )  # fmt: skip
        _one_market_and_lane(parser)
        parser.add_argument("--by", metavar="NAME", help="who (default: $USER)")


async def _worker(args: argparse.Namespace, settings: CliSettings, config: Config) -> int:
    from worker.daemon import serve

    return await serve(settings, config, markets=args.market, concurrency=args.concurrency)


# --- the parser -----------------------------------------------------------------------

LANES = [lane.value for lane in Lane]


def _version() -> str:
    try:
        return version("lanes")
    except PackageNotFoundError:
        return "unknown"


def _common_options() -> _Parser:
    """`--config` and `--log-level`, taken before or after the command name."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("every command")
    # SUPPRESS: a value given before the command is not reset by the command's default.
    group.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the TOML file of markets and lanes (default: LANES_CONFIG, else lanes.toml)",
    )
    group.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="default: LANES_LOG_LEVEL, else info",
    )
    return common


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
        parents=[_common_options()],
    )
    parser.set_defaults(run=run, command=name)
    return parser


def _markets_option(parser: _Parser) -> None:
    parser.add_argument(
        "-m", "--market", action="append", metavar="M", help="repeatable; default: all configured"
    )


def _one_market_and_lane(parser: _Parser, *, lane_default: str | None = None) -> None:
    parser.add_argument("-m", "--market", required=True, metavar="M")
    parser.add_argument(
        "-l",
        "--lane",
        required=lane_default is None,
        default=lane_default,
        choices=LANES,
        help=f"default: {lane_default}" if lane_default else None,
    )


def _sending_options(parser: _Parser) -> None:
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="print the message bodies, send nothing"
    )
    parser.add_argument(
        "--no-group-id", action="store_true", help="do not set MessageGroupId to the seller"
    )


def _backfill_options(parser: _Parser, *, hidden: bool = False) -> None:
    def shown(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    parser.add_argument(
        "-k", "--kind", metavar="K", help=shown("collect_orders or collect_order (default: "
        "collect_order with --ids-file, else collect_orders)"),
    )  # fmt: skip
    parser.add_argument("-s", "--seller", metavar="S", help=shown("the seller"))
    parser.add_argument("--since", metavar="DATE", help=shown("collect_orders: first day/moment"))
    parser.add_argument(
        "--until", metavar="DATE", help=shown("collect_orders: last day (included) or end moment")
    )
    parser.add_argument(
        "--step", metavar="D", help=shown("collect_orders: window (default: the market's longest)")
    )
    parser.add_argument(
        "--statuses",
        metavar="A,B",
        help=shown("collect_orders: one job per window and order status (Coupang's status)"),
    )
    parser.add_argument(
        "--ids-file", metavar="F", help=shown("collect_order: one id per line; - reads stdin")
    )
    parser.add_argument(
        "--id-field", metavar="NAME", help=shown("collect_order: payload field the id fills")
    )


def build_parser() -> _Parser:
    parser = _Parser(
        prog="lanes",
        description="Lane-aware SQS workers sharing marketplace API rate limits.",
        epilog="Settings come from LANES_* environment variables (LANES_CONFIG names the "
        "TOML file).\nRun `lanes COMMAND --help` for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options()],
    )
    parser.add_argument("--version", action="version", version=f"lanes {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    worker = _command(
        commands,
        "worker",
        _worker,
        "Drain the lane queues until SIGTERM/SIGINT, then finish in-flight work.",
        "  lanes worker\n  lanes worker -m coupang -c 64\n"
        "  lanes worker --config prod.toml --log-level debug\n",
    )
    _markets_option(worker)
    worker.add_argument(
        "-c", "--concurrency", type=_positive_int, metavar="N", help="jobs at once per process"
    )

    enqueue_parser = _command(
        commands,
        "enqueue",
        _send_jobs,
        "Send jobs, one JSON object per line, to a lane queue.",
        "  lanes enqueue -m coupang -l high -f jobs.jsonl\n"
        "  cat jobs.jsonl | lanes enqueue -m naver -l medium -f -\n"
        "  lanes enqueue -m naver -l medium -f <(grep ship jobs.jsonl) --dry-run\n"
        "\nEvery line is checked before anything is sent; each bad one is reported by its\n"
        "line number and nothing is sent. Standard input, pipes and FIFOs work as files.\n",
    )
    _one_market_and_lane(enqueue_parser)
    enqueue_parser.add_argument(
        "-f", "--file", metavar="F", help="JSON lines; - reads standard input"
    )
    _sending_options(enqueue_parser)
    _backfill_options(enqueue_parser, hidden=True)  # the old backfill mode, kept as an alias

    backfill_parser = _command(
        commands,
        "backfill",
        _send_jobs,
        "Send a backfill of past orders: a date range in windows, or a file of order ids.",
        "  lanes backfill -m coupang -s A0001 --since 2025-01-01 --until 2025-06-30\n"
        "  lanes backfill -m coupang -s A0001 --since 2025-01-01 --until 2025-01-31 \\\n"
        "      --statuses ACCEPT,INSTRUCT --dry-run\n"
        "  lanes backfill -m naver -l low -s S1 --since 2025-03-01 --until 2025-03-02 --step 6h\n"
        "  seq 1001 1100 | lanes backfill -m naver -s S1 --ids-file -\n"
        "\nEvery job carries a stable id, so the same backfill sent again is recognised by\n"
        "the worker (side effects are skipped; reads are repeated). Naive dates and times\n"
        "are Korean time. Every job is checked before any is sent.\n",
    )
    _one_market_and_lane(backfill_parser, lane_default=Lane.LOW.value)
    _backfill_options(backfill_parser)
    _sending_options(backfill_parser)

    replay_parser = _command(
        commands,
        "replay",
        _replay,
        "Move dead-lettered messages back to their lane queue.",
        "  lanes replay -m coupang -l low --dry-run\n"
        "  lanes replay -m coupang -l low -k collect_order --reason timeout\n"
        "  lanes replay -m naver -l high --max 100 --rate 5 --newer-than 2h\n"
        "\nA message is deleted from the dead-letter queue only after it was sent to the\n"
        "lane queue; its attempt count starts over.\n",
    )
    _one_market_and_lane(replay_parser)
    replay_parser.add_argument("-n", "--dry-run", action="store_true", help="list, move nothing")
    replay_parser.add_argument("--max", type=_positive_int, metavar="N", help="move at most N")
    replay_parser.add_argument("--rate", type=_positive_float, metavar="R", help="messages/s")
    replay_parser.add_argument("-k", "--kind", action="append", metavar="K", help="repeatable")
    replay_parser.add_argument("-s", "--seller", action="append", metavar="S", help="repeatable")
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
        "  lanes provision\n  lanes provision -m coupang -m naver\n"
        "  lanes provision --update    # also change queues that differ from the settings\n",
    )
    _markets_option(provision_parser)
    provision_parser.add_argument(
        "--update", action="store_true", help="set the attributes of queues that differ"
    )

    status_parser = _command(
        commands,
        "status",
        _status,
        "Queue depths per market and lane; budget usage per lane.",
        "  lanes status\n  lanes status --json\n  lanes status --watch 2 -m coupang\n",
    )
    _markets_option(status_parser)
    status_parser.add_argument("--json", action="store_true", help="one JSON object per refresh")
    status_parser.add_argument("--watch", type=_positive_float, metavar="SECONDS")

    schedule = _command(
        commands,
        "schedule",
        _schedule,
        "Every period, enqueue one collection job per seller of a market (once per period "
        "however many schedulers run).",
        "  lanes schedule -m naver --every 10m\n"
        "  lanes schedule -m coupang --once --sellers-file sellers.txt\n"
        "  lanes schedule -m naver --every 30m --spread 600 --dry-run\n"
        "\nSellers come from --sellers-file (one per line) or the market's credential source."
        "\nJobs carry no window: each collection reads from its seller's watermark.\n",
    )
    _one_market_and_lane(schedule, lane_default=Lane.MEDIUM.value)
    schedule.add_argument("-k", "--kind", default="collect_orders", metavar="K")
    schedule.add_argument("--every", default="10m", metavar="D", help="period (default 10m)")
    schedule.add_argument(
        "--spread", type=int, metavar="S", help="seconds a tick is spread over (default: "
        "LANES_SCHEDULE_SPREAD)"
    )  # fmt: skip
    schedule.add_argument("-f", "--sellers-file", metavar="F", help="one seller per line")
    schedule.add_argument("--once", action="store_true", help="one tick, then exit")
    schedule.add_argument("-n", "--dry-run", action="store_true", help="print, send nothing")
    _add_api_command(commands)
    _add_pause_commands(commands)
    demo = _command(
        commands,
        "demo",
        None,
        "Run the whole system on this machine (own Redis, moto SQS, market simulators): "
        "a burst with lanes, then the same burst in one FIFO queue.",
        "  lanes demo\n  lanes demo --duration 30 --sellers 100 --workers 2\n"
        "  lanes demo --mode lambda --duration 30\n  lanes demo --board 8090   # and the board\n"
        "  make demo\n",
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
    demo.add_argument(
        "--board", type=_positive_int, metavar="PORT",
        help="also serve `lanes api` on PORT during the lanes run; prints the board's URL",
    )  # fmt: skip
    ports = local_ports()  # the markets whose simulator `lanes services` starts
    services = _command(
        commands,
        "services",
        None,
        f"Start Redis, moto SQS and the {' and '.join(map(str.capitalize, ports))} simulators "
        "for running lanes by hand; prints the export lines; Ctrl-C stops them.",
        "  lanes services\n  lanes services "
        + " ".join(f"--{market}-port {port + 1000}" for market, port in ports.items())
        + "\n",
    )
    for market, port in ports.items():
        services.add_argument(f"--{market}-port", type=_positive_int, default=port, metavar="PORT")
    return parser


def _fail(message: str, code: int) -> int:
    for line in message.splitlines() or [""]:
        print(f"lanes: error: {' '.join(line.split())}", file=sys.stderr)
    return code


def _settings(args: argparse.Namespace) -> CliSettings:
    """`LANES_*` settings, with `--config` and `--log-level` winning over them."""
    overrides: dict[str, object] = {}
    if getattr(args, "config", None) is not None:
        overrides["config"] = Path(args.config)
    if getattr(args, "log_level", None) is not None:
        overrides["log_level"] = args.log_level
    return load_settings(CliSettings, **overrides)


def _needs_extra(command: str) -> str | None:
    """The line for a command whose extra is not installed, else None."""
    extra, modules = EXTRAS.get(command, ("", ()))
    if all(importlib.util.find_spec(module) is not None for module in modules):
        return None
    return f"lanes {command} needs the {extra} extra: pip install 'lanes[{extra}]'"


def _not_installed(exc: ModuleNotFoundError, command: str) -> str:
    """The line for a third-party module missing while a command runs."""
    missing = (exc.name or "").partition(".")[0]
    if not missing or missing in _OWN_PACKAGES:
        raise exc  # lanes itself is broken, not a missing extra: the traceback is the report
    return _needs_extra(command) or (
        f"lanes {command} needs {missing}, which is not installed: reinstall lanes"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The `lanes` console script."""
    args = argparse.Namespace()
    try:
        args = build_parser().parse_args(argv)
        for warning in unknown_variables(CliSettings):
            print(f"lanes: warning: {warning}", file=sys.stderr)
        missing_extra = _needs_extra(args.command)
        if missing_extra is not None:
            return _fail(missing_extra, EXIT_RUNTIME)
        if args.command == "services":  # no settings needed
            from scripts.local.devservices import run_services

            chosen = {market: getattr(args, f"{market}_port") for market in local_ports()}
            return run_services(chosen)
        if args.command == "demo":  # the demo makes its own settings and services
            from scripts.demo.run import DemoOptions, run_demo

            return run_demo(
                DemoOptions(
                    duration=args.duration,
                    sellers=args.sellers,
                    workers=args.workers,
                    mode=args.mode,
                    compare=not args.no_compare,
                    board_port=args.board,
                )
            )
        settings = _settings(args)
        configure_logging(settings.log_level)
        config = markets.load_config(settings.config)
        run: Command = args.run
        return asyncio.run(run(args, settings, config))
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except NoRegionError:
        return _fail("no AWS region: set AWS_REGION (or LANES_SQS_ENDPOINT_URL)", EXIT_USAGE)
    except LanesError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    except ModuleNotFoundError as exc:
        return _fail(_not_installed(exc, getattr(args, "command", "")), EXIT_RUNTIME)
    except KeyboardInterrupt:
        if getattr(args, "watch", None) is not None:
            return 0  # Ctrl-C is how `status --watch` ends: quietly
        return _fail("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
