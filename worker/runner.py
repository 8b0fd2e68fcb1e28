"""`lanes worker`: run the dispatcher daemon until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

import structlog

from lanes.config import Config
from lanes.errors import ConfigError, LanesError
from lanes.logs import configure_logging
from lanes.policy import Lane
from lanes.settings import Settings
from worker.dispatcher import DEFAULT_JOB_SECONDS, Dispatcher, LaneSource
from worker.queues import QueueName
from worker.runtime import Runtime
from worker.sqs import QueueMissing

__all__ = ["EXIT_OK", "EXIT_STARTUP", "build_dispatcher", "main", "run_worker"]

EXIT_OK = 0
EXIT_STARTUP = 2  # bad settings, unknown market, missing queue: one line on stderr
_log = structlog.get_logger("worker")


def _market_names(config: Config, wanted: Sequence[str] | None) -> list[str]:
    names = list(wanted) if wanted else sorted(config.markets)
    if not names:
        raise ConfigError("no markets configured: add a [markets.NAME] table")
    for name in names:
        config.market(name)  # raises one-line ConfigError for an unknown market
    return names


async def _sources(runtime: Runtime, names: list[str]) -> list[LaneSource]:
    """The lane queues, high to low per market; each queue and its dead-letter queue must exist."""
    sources = []
    for lane in Lane:
        for name in names:
            queue = QueueName(runtime.settings.queue_prefix, name, lane)
            try:
                url = await runtime.sqs.queue_url(queue.queue)
                await runtime.sqs.queue_url(queue.dead_letter)
            except QueueMissing as exc:
                raise QueueMissing(f"{exc} (run `lanes provision`)") from exc
            sources.append(LaneSource(queue=queue, url=url, policy=runtime.config.lanes[lane]))
    return sources


async def build_dispatcher(
    runtime: Runtime,
    *,
    markets: Sequence[str] | None = None,
    concurrency: int | None = None,
    job_seconds: float = DEFAULT_JOB_SECONDS,
) -> Dispatcher:
    """A dispatcher over the lane queues of `markets` (all configured markets by default)."""
    settings = runtime.settings
    return Dispatcher(
        sqs=runtime.sqs,
        processor=runtime.processor,
        settler=runtime.settler,
        sources=await _sources(runtime, _market_names(runtime.config, markets)),
        concurrency=concurrency or settings.concurrency,
        visibility_timeout=settings.visibility_timeout,
        wait_seconds=settings.wait_seconds,
        grace_seconds=settings.grace_seconds,
        job_seconds=job_seconds,
    )


async def main(
    settings: Settings,
    config: Config,
    *,
    markets: Sequence[str] | None = None,
    concurrency: int | None = None,
    job_seconds: float = DEFAULT_JOB_SECONDS,
) -> int:
    """Drain the lane queues of `markets` (all configured by default) until a signal."""
    _market_names(config, markets)  # an unknown market fails before anything opens
    async with Runtime(settings, config) as runtime:
        dispatcher = await build_dispatcher(
            runtime, markets=markets, concurrency=concurrency, job_seconds=job_seconds
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, dispatcher.stop)
        try:
            await dispatcher.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    return EXIT_OK


def run_worker(
    settings: Settings,
    config: Config,
    markets: Sequence[str] | None = None,
    concurrency: int | None = None,
) -> int:
    """The `lanes worker` entry point: the exit code (0 after a clean shutdown)."""
    configure_logging(settings.log_level)
    try:
        return asyncio.run(main(settings, config, markets=markets, concurrency=concurrency))
    except LanesError as exc:
        print(f"lanes worker: {exc}", file=sys.stderr)
        return EXIT_STARTUP
