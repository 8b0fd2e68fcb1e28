"""The board in a real browser: Debian's headless Chromium driven by Playwright, against the
app served by uvicorn on loopback, the test Redis, moto's SQS server, the market simulators
and an in-process worker. Skipped, with the reason, where chromium or playwright is missing
(`.ci/run` installs chromium where apt-get is available)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from bench.browser import CHROMIUM, chromium
from bench.browser import served as serve
from lanes import Lane
from scripts.api.app import create_app
from tests.fixtures_api import COUPANG_ORDER, KEY, ApiEnv, collect_job
from tests.fixtures_markets import COUPANG_VENDOR, Running
from tests.fixtures_worker import RunningWorker
from worker.envelope import Envelope
from worker.pauses import LanePauses
from worker.queues import ATTR_REASON, QueueName
from worker.sqs import OutgoingMessage

if TYPE_CHECKING:
    from playwright.async_api import Page

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="no chromium (Debian: apt-get install -y chromium chromium-driver)",
    ),
]


@dataclass
class Served:
    url: str
    env: ApiEnv
    app: FastAPI


@pytest.fixture
async def served(api_env: ApiEnv, exit_stack: AsyncExitStack) -> AsyncIterator[Served]:
    """The API app (and so the board) served by uvicorn on a free loopback port."""
    app = create_app(api_env.settings, api_env.config)
    async with serve(app) as url:
        app.state.runtime.limiter._restart_guard = False
        yield Served(url, api_env, app)


@pytest.fixture
async def page(served: Served) -> AsyncIterator[Page]:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        yield await context.new_page()


async def sign_in(page: Page, served: Served, key: str = KEY, *, prefix: str = "") -> None:
    await page.goto(f"{served.url}{prefix}/board")
    await page.fill("#key", key)
    await page.fill("#name", "on call")
    await page.click("#signin")


async def test_the_board_loads_with_a_key_and_refuses_without(page: Page, served: Served) -> None:
    """Without a session: the login form, and the data 401 even from the page's own origin.
    A wrong key stays on the form. The right key: the board, live, and the session cookie is
    HTTP-only (the page's script cannot read it), Secure and SameSite=Strict."""
    answer = await page.goto(f"{served.url}/board")
    assert answer.status == 401
    assert await page.is_visible("#key")
    status = await page.evaluate("fetch('/board/api/snapshot').then(r => r.status)")
    assert status == 401
    await sign_in(page, served, "wrong-key")
    assert await page.is_visible("#error")
    await sign_in(page, served)
    await page.wait_for_selector("#queues tbody tr[data-queue='coupang:high']")
    assert "on call" in await page.text_content("#who")
    (cookie,) = await page.context.cookies()
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert await page.evaluate("document.cookie") == ""
    assert KEY not in await page.content()
    assert KEY not in page.url


@pytest.mark.timeout(180)
async def test_usage_moves_by_lane_and_a_cooldown_appears_after_a_429(
    page: Page,
    served: Served,
    coupang_sim: Running,
    start_worker: Callable[..., Awaitable[RunningWorker]],
) -> None:
    """A load in every lane of Coupang: the vendor's card shows each lane's usage, changing
    from one second to the next; the simulator answers one 429 and the card shows the
    cooldown with its end. Low may only take the budget to its ceiling, so while high and
    medium keep it fuller it is admitted nothing: its share shows once theirs drains, and
    its longer backlog is still running when the 429 comes."""
    env = served.env
    backlog = {Lane.HIGH: 40, Lane.MEDIUM: 40, Lane.LOW: 160}
    for lane in Lane:
        bodies = [
            Envelope.model_validate(collect_job("coupang", n)).body() for n in range(backlog[lane])
        ]
        url = await env.sqs.queue_url(QueueName(env.settings.queue_prefix, "coupang", lane).queue)
        for start in range(0, len(bodies), 10):
            await env.sqs.send_batch(
                url, [OutgoingMessage(body=b) for b in bodies[start : start + 10]]
            )
    await start_worker(env.settings.model_copy(update={"concurrency": 12}), env.config)
    await sign_in(page, served)
    card = f".card[data-budget$=':{COUPANG_VENDOR}']"
    await page.wait_for_selector(card, timeout=30_000)
    seen: dict[str, list[int]] = {lane.value: [] for lane in Lane}
    for _ in range(120):  # until every lane has shown usage and some usage moved, a minute at most
        for lane in Lane:
            value = await page.get_attribute(card, f"data-used-{lane.value}")
            seen[lane.value].append(int(value or 0))
        shown = all(max(values) > 0 for values in seen.values())
        if shown and any(len(set(values)) > 1 for values in seen.values()):
            break
        await asyncio.sleep(0.5)
    for lane, values in seen.items():
        assert max(values) > 0, (lane, values)
    assert any(len(set(values)) > 1 for values in seen.values()), seen
    coupang_sim.state.faults.status = 429
    coupang_sim.state.faults.fail_next = 1
    await page.wait_for_selector(f"{card} .cooldown", timeout=30_000)
    text = await page.text_content(f"{card} .cooldown")
    assert "ends" in (text or "")


async def test_a_dead_letter_group_replayed_from_the_page_arrives_back_once(
    page: Page, served: Served
) -> None:
    env = served.env
    names = QueueName(env.settings.queue_prefix, "naver", Lane.MEDIUM)
    dead_url = await env.sqs.queue_url(names.dead_letter)
    bodies = [
        (f'{{"kind":"collect_order","market":"naver","seller":"s{n}","id":"d{n}"}}', reason)
        for n, reason in enumerate(["permanent error: 401", "permanent error: 401", "timeout"])
    ]
    await env.sqs.send_batch(
        dead_url, [OutgoingMessage(body=b, attributes={ATTR_REASON: r}) for b, r in bodies]
    )
    await sign_in(page, served)
    await page.select_option("#dead-market", "naver")
    await page.select_option("#dead-lane", "medium")
    await page.click("#dead-form button[type=submit]")
    group = ".group[data-reason='permanent error: 401']"
    await page.wait_for_selector(group, timeout=30_000)
    assert "2 x " in (await page.text_content(f"{group} h3") or "")
    await page.click(f"{group} .replay-group")
    await page.wait_for_selector("#dead-confirm:not([hidden])", timeout=30_000)
    assert "would move 2 of 2" in (await page.text_content("#dead-confirm-text") or "")
    assert await env.depth("naver", Lane.MEDIUM) == 0  # the dry run moved nothing
    await page.click("#dead-confirm-yes")
    # (not wait_for_function: the page's CSP refuses eval, Playwright's too)
    await page.wait_for_selector("#dead-status:has-text('moved 2')", timeout=30_000)
    url = await env.sqs.queue_url(names.queue)
    arrived = []
    while got := await env.sqs.receive(url, max_messages=10, wait_seconds=1, visibility_timeout=60):
        arrived.extend(message.body for message in got)
    assert sorted(arrived) == sorted(b for b, r in bodies if r.startswith("permanent"))
    await page.wait_for_selector("#dead-status:has-text('1 dead letter(s) in 1 group(s)')")
    assert await page.query_selector(".group[data-reason='timeout']") is not None
    assert await page.query_selector(group) is None


async def test_a_job_looked_up_by_id_shows_its_result(page: Page, served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers={"X-API-Key": KEY}) as api:
        answer = await api.post(
            f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/{COUPANG_ORDER}/collect",
            params={"wait": 10},
        )
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["id"]
    await sign_in(page, served)
    await page.fill("#job-id", job_id)
    await page.click("#job-form button")
    await page.wait_for_selector(".job-state.state-done")
    shown = await page.text_content(".job-record") or ""
    assert str(COUPANG_ORDER) in shown
    await page.fill("#job-id", "no-such-job")
    await page.click("#job-form button")
    await page.wait_for_selector("#job .error")


async def test_a_lane_paused_and_resumed_from_the_page(page: Page, served: Served) -> None:
    await sign_in(page, served)
    row = "#queues tr[data-queue='naver:low']"
    await page.click(f"{row} button.pause")
    await page.wait_for_selector(f"{row} .paused:has-text('paused by on call')")
    pauses = LanePauses(served.app.state.runtime.store.client)
    assert await pauses.paused("naver", Lane.LOW)
    await page.click(f"{row} button.resume")
    await page.wait_for_selector(f"{row} .state:has-text('running')")
    assert await pauses.all() == {}


async def test_the_board_under_a_stage_prefix(api_env: ApiEnv) -> None:
    """Served under /prod (as behind API Gateway's stage: the app mounted there), the page
    signs in, draws the live data, pauses a lane and signs out without leaving /prod."""
    app = create_app(api_env.settings, api_env.config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with app.router.lifespan_context(app):
            yield

    outer = Starlette(routes=[Mount("/prod", app=app)], lifespan=lifespan)
    async with serve(outer) as url, chromium() as browser:
        app.state.runtime.limiter._restart_guard = False
        page = await browser.new_page()
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await sign_in(page, Served(url, api_env, app), prefix="/prod")
        row = "#queues tr[data-queue='naver:low']"
        await page.wait_for_selector(row, timeout=30_000)
        await page.click(f"{row} button.pause")
        await page.wait_for_selector(f"{row} .paused:has-text('paused by on call')")
        await page.click("header button[type=submit]")
        await page.wait_for_selector("#key")
        assert page.url == f"{url}/prod/board/"
    assert asked
    assert [u for u in asked if not u.startswith(f"{url}/prod/board")] == []


async def test_a_sellers_failed_jobs_listed_on_the_page(page: Page, served: Served) -> None:
    """The seller view counts the seller's recent jobs by lane and state and lists those of
    the state picked: the failed ones, so support can answer for one seller."""
    records = served.app.state.runtime.tracker
    await records.update_many(
        [{"id": f"s{n}", "state": state, "market": "naver", "seller": "S1", "lane": lane}
         for n, (state, lane) in enumerate(
             [("done", "high"), ("failed", "low"), ("dead_lettered", "low"), ("failed", "high")]
         )]
    )  # fmt: skip
    await sign_in(page, served)
    await page.wait_for_selector("#seller-market option", state="attached")
    await page.select_option("#seller-market", "naver")
    await page.fill("#seller-id", "S1")
    await page.select_option("#seller-state", "failed")
    await page.click("#seller-form button")
    await page.wait_for_selector("#seller-jobs tr[data-job]")
    rows = await page.query_selector_all("#seller-jobs tr[data-job]")
    assert sorted([await row.get_attribute("data-job") for row in rows]) == ["s1", "s3"]
    assert "low failed: 1" in (await page.text_content("#seller-jobs p") or "")
