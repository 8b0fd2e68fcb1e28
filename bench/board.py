"""What the board costs Redis and SQS with 1 and with 10 open pages, and its screenshots.

    python -m bench.board [--seconds 10] [--screenshots docs]

Starts its own Redis, moto SQS and the demo's two simulators (child processes), serves
the API app in this process, runs one in-process worker on the demo's burst
(`scripts.demo.load`), and opens headless Chromium pages (Debian's `chromium`, driven by
Playwright) on the board. With `--screenshots DIR` it writes `board.png` (a laptop) and
`board-phone.png` while the burst runs, once a budget's card shows a cooldown: for that
run the Coupang simulator allows a vendor 60 % of the rate lanes is configured with, so
the market answers 429 during the burst as a market whose limit fell would. Then, the
burst drained and the worker stopped
(so that every command counted is the board's), it counts for `--seconds` each with 0,
1 and 10 pages open: Redis commands per second (`INFO commandstats` deltas, less the
INFO calls themselves), the API's SQS calls per second, and the snapshots read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from playwright.async_api import Browser, Page

import markets
from bench.browser import chromium, served
from lanes.logs import configure_logging
from lanes.settings import load_settings
from scripts.api.app import create_app
from scripts.api.settings import ApiSettings
from scripts.demo.load import (
    LIMITS,
    MARKET_RATES,
    MARKETS,
    config_text,
    plan_burst,
)
from scripts.local.services import MotoServer, RedisServer, SimulatorServer, credential_variables
from scripts.tools.provision import provision
from worker.daemon import build_dispatcher
from worker.queues import QueueName
from worker.runtime import Runtime
from worker.sqs import OutgoingMessage, SqsClient

KEY = "bench-board-key"


async def _redis_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(value["calls"]) for value in stats.values())


async def _open_pages(browser: Browser, url: str, count: int, **context: Any) -> list[Page]:
    pages = []
    for _ in range(count):
        page = await (await browser.new_context(**context)).new_page()
        await page.goto(f"{url}/board")
        await page.fill("#key", KEY)
        await page.fill("#name", "bench")
        await page.click("#signin")
        await page.wait_for_selector("#queues tbody tr")
        pages.append(page)
    return pages


async def _close(pages: list[Page]) -> None:
    for page in pages:
        await page.context.close()


async def _burst(sqs: SqsClient, prefix: str, seconds: float) -> None:
    plan = plan_burst(seconds, 100)
    started = time.monotonic()
    for job in sorted(plan, key=lambda planned: planned.at):
        await asyncio.sleep(max(0.0, started + job.at - time.monotonic()))
        url = await sqs.queue_url(QueueName(prefix, job.market, job.lane).queue)
        await sqs.send_batch(url, [OutgoingMessage(body=job.body)])


async def main(seconds: float, screenshots: Path | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="lanes-bench-board-"))
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        moto = stack.enter_context(MotoServer())
        rates = dict(MARKET_RATES)
        if screenshots is not None:  # a cooldown to show: 429s from Coupang
            rates["coupang"] = LIMITS["coupang"] * 0.6
        sims = {
            market: stack.enter_context(
                SimulatorServer(market, rates[market], module="scripts.demo.sim")
            )
            for market in MARKETS
        }
        (work / "lanes.toml").write_text(config_text({m: s.base_url for m, s in sims.items()}))
        os.environ.update(
            {
                **credential_variables(MARKETS),
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1", "LANES_LOG_LEVEL": "error",
            }
        )  # fmt: skip
        settings = load_settings(
            ApiSettings,
            config=work / "lanes.toml", redis_url=redis_server.url, sqs_endpoint_url=moto.url,
            queue_prefix="bench", api_keys=[KEY], results_url=f"file:{work / 'results.jsonl'}",
            wait_seconds=1, concurrency=16,
        )  # fmt: skip
        configure_logging(settings.log_level)
        config = markets.load_config(settings.config)
        app = create_app(settings, config)
        async with (
            SqsClient(endpoint_url=moto.url, region="us-east-1") as sqs,
            aioredis.Redis.from_url(redis_server.url) as redis,
            served(app) as url,
            chromium() as browser,
        ):
            await provision(sqs, prefix="bench", markets=list(MARKETS), visibility_timeout=60)
            runtime = app.state.runtime
            sqs_calls: Counter[str] = Counter()
            calling = runtime.sqs._calling

            @contextlib.asynccontextmanager
            async def counted(action: str, queue: str) -> AsyncIterator[Any]:
                sqs_calls[action] += 1
                async with calling(action, queue) as client:
                    yield client

            runtime.sqs._calling = counted
            worker = Runtime(settings, config)
            worker.limiter._restart_guard = False  # this Redis is new: no data was lost
            await worker.open()
            dispatcher = await build_dispatcher(worker)
            running = asyncio.create_task(dispatcher.run())
            burst = asyncio.create_task(_burst(sqs, "bench", 40.0))
            if screenshots is not None:
                await asyncio.sleep(4)
                (laptop,) = await _open_pages(
                    browser, url, 1, viewport={"width": 1366, "height": 900}
                )
                (phone,) = await _open_pages(
                    browser, url, 1, viewport={"width": 390, "height": 844},
                    device_scale_factor=2, is_mobile=True,
                )  # fmt: skip
                await asyncio.sleep(22)  # into the high phase, with charts of 20 s
                for page in (laptop, phone):
                    await page.wait_for_selector(".card .cooldown", timeout=60_000)
                await laptop.screenshot(path=str(screenshots / "board.png"), full_page=True)
                await phone.screenshot(path=str(screenshots / "board-phone.png"))
                await _close([laptop, phone])
            await burst
            await asyncio.sleep(15)
            dispatcher.stop()
            await running
            await worker.aclose()
            print(f"board cost over {seconds:g} s each (worker stopped), host load "
                  f"{os.getloadavg()[0]:.1f}:")  # fmt: skip
            print("pages  redis cmd/s  sqs calls/s  snapshots/s")
            for count in (0, 1, 10):
                pages = await _open_pages(browser, url, count)
                await asyncio.sleep(2)
                before_redis, before_sqs = await _redis_calls(redis), sqs_calls.total()
                before_reads = app.state.board_feed.reads
                await asyncio.sleep(seconds)
                redis_rate = (await _redis_calls(redis) - before_redis - 1) / seconds
                sqs_rate = (sqs_calls.total() - before_sqs) / seconds
                reads = (app.state.board_feed.reads - before_reads) / seconds
                print(f"{count:5}  {redis_rate:11.1f}  {sqs_rate:11.1f}  {reads:11.2f}")
                await _close(pages)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--screenshots", type=Path)
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.screenshots))
