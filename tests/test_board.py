"""The board's server side (scripts/api/board.py) through httpx on the real app, Redis and moto:
the key is taken once on the login form and then only a signed session cookie (HTTP-only,
Secure, SameSite=Strict) opens the data; one snapshot is read per interval whatever the
number of pages; dead letters are listed by reason and replayed or deleted by id; jobs and
a seller's recent jobs are read back; lanes are paused with who and when."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from lanes import Lane
from scripts.api import app as api
from scripts.api.app import create_app
from scripts.api.board import COOKIE, Feed, Sessions
from tests.fixtures_api import COUPANG_ORDER, KEY, ApiEnv
from tests.fixtures_markets import COUPANG_VENDOR
from tests.fixtures_scripts import LanesEnv
from worker.pauses import LanePauses
from worker.queues import ATTR_FAILED_AT, ATTR_FIRST_ATTEMPT_AT, ATTR_REASON, QueueName
from worker.sqs import OutgoingMessage


async def _board(env: ApiEnv, stack: AsyncExitStack) -> httpx.AsyncClient:
    """A client without a key header, on https (the cookie is Secure), not following
    redirects."""
    app = create_app(env.settings, env.config)
    await stack.enter_async_context(app.router.lifespan_context(app))
    app.state.runtime.limiter._restart_guard = False
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://lanes.test"
    )
    return await stack.enter_async_context(client)


@pytest.fixture
async def board(api_env: ApiEnv, exit_stack: AsyncExitStack) -> httpx.AsyncClient:
    return await _board(api_env, exit_stack)


async def _sign_in(board: httpx.AsyncClient, key: str = KEY) -> httpx.Response:
    return await board.post("/board/login", data={"key": key, "name": "Ada  Lovelace"})


async def test_without_a_session_the_page_is_the_login_form_and_the_data_401(
    board: httpx.AsyncClient,
) -> None:
    assert (await board.get("/board")).headers["location"] == "board/"
    page = await board.get("/board/")
    assert page.status_code == 401
    assert 'action="login"' in page.text
    assert "Content-Security-Policy" in page.headers
    data = await board.get("/board/api/snapshot")
    assert data.status_code == 401
    assert data.json()["errors"][0]["field"] == "X-API-Key"


async def test_a_wrong_key_is_refused_on_the_form(board: httpx.AsyncClient) -> None:
    answer = await _sign_in(board, "not-the-key")
    assert answer.status_code == 401
    assert 'id="error" hidden' not in answer.text
    assert COOKIE not in answer.headers.get("set-cookie", "")


async def test_the_key_once_then_a_secure_http_only_strict_cookie(
    board: httpx.AsyncClient,
) -> None:
    """The login answers a redirect with the session cookie; the cookie holds no key, and
    opens the page and the data (but not the API's own routes)."""
    answer = await _sign_in(board)
    assert answer.status_code == 303
    assert answer.headers["location"] == "./"
    cookie = answer.headers["set-cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Max-Age=28800"):
        assert flag.lower() in cookie.lower()
    assert "path=" not in cookie.lower()  # the browser's default: the login URL's directory
    assert KEY not in cookie
    page = await board.get("/board/")
    assert page.status_code == 200
    assert '"static/board.js"' in page.text
    assert KEY not in page.text
    snap = await board.get("/board/api/snapshot")
    assert snap.status_code == 200
    body = snap.json()
    assert body["who"] == "Ada Lovelace"
    assert {(q["market"], q["lane"]) for q in body["queues"]} == {
        (m, lane.value) for m in ("coupang", "naver") for lane in Lane
    }
    assert (await board.get("/v1/status")).status_code == 401
    assert (await board.get("/board/static/board.js")).status_code == 200


async def test_under_a_prefix_every_url_stays_under_it(
    api_env: ApiEnv, exit_stack: AsyncExitStack
) -> None:
    """Behind a prefix the app does not see in its routes (an API Gateway stage, a proxy's
    path: here the app mounted at /prod), a client that follows only what the board names,
    resolved against the page's URL as a browser does, stays under /prod: the redirects,
    the form actions, the static files, the script's fetches; the cookie is scoped to
    /prod/board by the browser's default."""
    app = create_app(api_env.settings, api_env.config)
    await exit_stack.enter_async_context(app.router.lifespan_context(app))
    app.state.runtime.limiter._restart_guard = False
    outer = Starlette(routes=[Mount("/prod", app=app)])
    client = await exit_stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=outer),
                          base_url="https://lanes.test", follow_redirects=True)
    )  # fmt: skip
    login = await client.get("/prod/board")
    assert (login.status_code, login.url.path) == (401, "/prod/board/")
    named = re.findall(r'(?:href|src|action)="([^"]+)"', login.text)
    assert named
    assert not [url for url in named if url.startswith("/")]
    assert (await client.get(login.url.join("static/board.css"))).status_code == 200
    page = await client.post(login.url.join("login"), data={"key": KEY, "name": "Ada"})
    assert (page.status_code, page.url.path) == (200, "/prod/board/")
    (cookie,) = client.cookies.jar
    assert cookie.path == "/prod/board"
    named = re.findall(r'(?:href|src|action)="([^"]+)"', page.text)
    assert named
    assert not [url for url in named if url.startswith("/")]
    script = await client.get(page.url.join("static/board.js"))
    assert 'fetch("api/" + path' in script.text
    assert not re.search(r"""["'`]/board""", script.text)  # no absolute URL of the board
    snap = await client.get(page.url.join("api/snapshot"))
    assert (snap.status_code, snap.json()["who"]) == (200, "Ada")
    out = await client.post(page.url.join("logout"))
    assert (out.status_code, out.url.path) == (401, "/prod/board/")
    assert (await client.get(page.url.join("api/snapshot"))).status_code == 401


async def test_a_tampered_or_expired_cookie_is_refused(board: httpx.AsyncClient) -> None:
    await _sign_in(board)
    token = board.cookies[COOKIE]
    board.cookies.clear()
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    refused = await board.get("/board/api/snapshot", headers={"Cookie": f"{COOKIE}={forged}"})
    assert refused.status_code == 401
    sessions = Sessions([KEY.encode()], max_age=-1)
    assert sessions.who(token) is None
    assert Sessions([KEY.encode()]).who(token) == "Ada Lovelace"
    assert Sessions([b"another-key"]).who(token) is None  # new keys end every session


async def test_ten_pages_at_once_read_one_snapshot(board: httpx.AsyncClient) -> None:
    await _sign_in(board)
    answers = await asyncio.gather(*(board.get("/board/api/snapshot") for _ in range(10)))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["at"] for answer in answers}) == 1  # one snapshot, shared


async def test_dead_letters_by_reason_replayed_by_id_after_a_dry_run(
    board: httpx.AsyncClient, api_env: ApiEnv
) -> None:
    """Three dead letters, two reasons: listed in two groups; a dry run of one group moves
    nothing; the confirmed run moves exactly its ids back to the lane; a deleted one is
    gone from both queues."""
    await _sign_in(board)
    sqs = api_env.sqs
    tried = {ATTR_FIRST_ATTEMPT_AT: "2026-12-04T10:00:00+00:00",
             ATTR_FAILED_AT: "2026-12-04T10:05:00+00:00"}  # fmt: skip
    names = QueueName(api_env.settings.queue_prefix, "coupang", Lane.LOW)
    dead_url = await sqs.queue_url(names.dead_letter)
    await sqs.send_batch(
        dead_url,
        [
            OutgoingMessage(body=f'{{"kind":"collect_order","seller":"s{n}"}}',
                            attributes={ATTR_REASON: reason, **attempts})
            for n, (reason, attempts) in enumerate(
                [("permanent: 401", {}), ("permanent: 401", {}), ("timeout", tried)]
            )
        ],
    )  # fmt: skip
    listed = (await board.get("/board/api/dead-letters?market=coupang&lane=low")).json()
    groups = {group["reason"]: group for group in listed["groups"]}
    (timed_out,) = groups["timeout"]["jobs"]
    assert (timed_out["first_attempt_at"], timed_out["last_attempt_at"]) == (
        tried[ATTR_FIRST_ATTEMPT_AT], tried[ATTR_FAILED_AT],
    )  # fmt: skip
    assert groups["permanent: 401"]["jobs"][0]["first_attempt_at"] is None  # SQS redrove it
    assert {reason: group["count"] for reason, group in groups.items()} == {
        "permanent: 401": 2,
        "timeout": 1,
    }
    ids = [job["message_id"] for job in groups["permanent: 401"]["jobs"]]
    pick = {"market": "coupang", "lane": "low", "ids": ids}
    dry = (await board.post("/board/api/replay", json={**pick, "dry_run": True})).json()
    assert (dry["would_move"], dry["moved"]) == (2, 0)
    assert await api_env.depth("coupang", Lane.LOW) == 0
    done = (await board.post("/board/api/replay", json={**pick, "dry_run": False})).json()
    assert done["moved"] == 2
    assert await api_env.depth("coupang", Lane.LOW) == 2
    (timeout,) = [job["message_id"] for job in groups["timeout"]["jobs"]]
    gone = await board.post(
        "/board/api/discard", json={"market": "coupang", "lane": "low", "ids": [timeout]}
    )
    assert gone.json() == {"deleted": 1}
    after = (await board.get("/board/api/dead-letters?market=coupang&lane=low")).json()
    assert after["groups"] == []
    await asyncio.sleep(Feed().interval)  # the shared snapshot is read anew
    snap = (await board.get("/board/api/snapshot")).json()
    (row,) = [q for q in snap["queues"] if (q["market"], q["lane"]) == ("coupang", "low")]
    assert row["replayed_per_minute"] > 0  # 2, less a share if the minute turned
    assert row["discarded_per_minute"] == pytest.approx(row["replayed_per_minute"] / 2, abs=0.1)
    bad = await board.post("/board/api/replay", json={**pick, "market": "nowhere"})
    assert bad.status_code == 404


async def test_a_job_by_id_and_a_sellers_recent_jobs(board: httpx.AsyncClient) -> None:
    await _sign_in(board)
    records = board._transport.app.state.runtime.tracker  # type: ignore[attr-defined]
    await records.update_many(
        [
            {"id": "j1", "state": "done", "market": "coupang", "seller": "S1", "lane": "high",
             "result": {"order": 7}},
            {"id": "j2", "state": "dead_lettered", "market": "coupang", "seller": "S1",
             "lane": "low", "reason": "permanent: 401"},
            {"id": "j3", "state": "done", "market": "coupang", "seller": "S2", "lane": "low"},
        ]
    )  # fmt: skip
    await records.update("j1", "done", market="coupang", seller="S1", lane="high",
                         result={"order": 7})  # fmt: skip
    job = await board.get("/board/api/jobs/j1")
    assert job.json()["result"] == {"order": 7}
    assert (await board.get("/board/api/jobs/none")).status_code == 404
    recent = (await board.get("/board/api/sellers/coupang/S1/jobs")).json()
    assert [record["id"] for record in recent] == ["j1", "j2"]  # newest change first


async def test_pause_and_resume_a_lane_with_who_and_when(board: httpx.AsyncClient) -> None:
    await _sign_in(board)
    answer = await board.post("/board/api/lanes/naver/medium/pause")
    flag = answer.json()["paused"]["naver:medium"]
    assert flag["by"] == "Ada Lovelace"
    assert flag["at"]
    runtime = board._transport.app.state.runtime  # type: ignore[attr-defined]
    assert await LanePauses(runtime.store.client).paused("naver", Lane.MEDIUM)
    assert (await board.post("/board/api/lanes/naver/medium/resume")).json()["paused"] == {}
    assert (await board.post("/board/api/lanes/naver/medium/stop")).status_code == 422


async def test_queues_show_the_outcomes_of_the_trailing_minute(board: httpx.AsyncClient) -> None:
    """Settled states written by the workers are counted per minute by market and lane (in
    the status writes' round trip); queued and running ones are not."""
    await _sign_in(board)
    records = board._transport.app.state.runtime.tracker  # type: ignore[attr-defined]
    await records.update_many(
        [{"id": f"o{n}", "state": state, "market": "naver", "lane": "low"}
         for n, state in enumerate(["done", "done", "failed", "dead_lettered", "queued"])]
    )  # fmt: skip
    snap = (await board.get("/board/api/snapshot")).json()
    (row,) = [q for q in snap["queues"] if (q["market"], q["lane"]) == ("naver", "low")]
    # 2, 1, 1 (less a share of each if the minute turned between the write and the read)
    done, failed = row["done_per_minute"], row["failed_per_minute"]
    assert done > 0
    assert failed == pytest.approx(done / 2, abs=0.1)
    assert row["dead_lettered_per_minute"] == failed


async def test_the_busiest_sellers_and_a_search(board: httpx.AsyncClient) -> None:
    """A per-vendor budget in use (a Coupang collection now) is listed, and found by search."""
    collected = await board.post(
        f"/v1/markets/coupang/sellers/{COUPANG_VENDOR}/orders/{COUPANG_ORDER}/collect",
        headers={"X-API-Key": KEY},
    )
    assert collected.status_code == 200, collected.text
    await _sign_in(board)
    snap = (await board.get("/board/api/snapshot")).json()
    assert [row["seller"] for row in snap["busiest_sellers"]] == [COUPANG_VENDOR]
    found = (await board.get("/board/api/sellers", params={"q": COUPANG_VENDOR[-5:]})).json()
    assert [row["seller"] for row in found] == [COUPANG_VENDOR]
    assert (await board.get("/board/api/sellers", params={"q": "nobody"})).json() == []


def _event(path: str, *, method: str = "GET", body: str = "", cookie: str = "") -> dict[str, Any]:
    headers = {"host": "lanes.example", "content-type": "application/x-www-form-urlencoded"}
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers, "cookies": [cookie] if cookie else [],
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"},
            "stage": "$default",
        },
        "body": body, "isBase64Encoded": False,
    }  # fmt: skip


def test_the_board_behind_api_gateway(lanes_env: LanesEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda (Mangum) serves the same board: the login form, the cookie, the data."""
    monkeypatch.setenv("LANES_API_KEYS", KEY)
    monkeypatch.setattr(api, "_lambda", None)
    monkeypatch.setattr(api, "configure_logging", lambda level: None)
    page = api.handler(_event("/board/"), None)
    assert page["statusCode"] == 401
    assert 'action="login"' in page["body"]
    assert api.handler(_event("/board/api/snapshot"), None)["statusCode"] == 401
    signed = api.handler(_event("/board/login", method="POST", body=f"key={KEY}"), None)
    assert signed["statusCode"] == 303
    (cookie,) = signed["cookies"]
    assert "httponly" in cookie.lower()
    snap = api.handler(_event("/board/api/snapshot", cookie=cookie.split(";")[0]), None)
    assert snap["statusCode"] == 200
    assert json.loads(snap["body"])["who"] == "operator"
    script = api.handler(_event("/board/static/board.js"), None)
    assert script["statusCode"] == 200


async def test_queues_show_the_age_of_their_oldest_unsettled_job(
    board: httpx.AsyncClient, api_env: ApiEnv
) -> None:
    """A lane holding a message shows the age of its oldest job not yet settled (since the
    API recorded it queued); an empty queue shows none, whatever its waiting set says (an
    entry whose settle was never recorded); the dead-letter queue shows its own."""
    await _sign_in(board)
    records = board._transport.app.state.runtime.tracker  # type: ignore[attr-defined]
    lane = {"market": "naver", "lane": "high"}
    await records.update_many(
        [{"id": "w1", "state": "queued", **lane}, {"id": "w2", "state": "dead_lettered", **lane},
         {"id": "w3", "state": "queued", "market": "naver", "lane": "low"}]
    )  # fmt: skip
    names = QueueName(api_env.settings.queue_prefix, "naver", Lane.HIGH)
    for queue in (names.queue, names.dead_letter):
        await api_env.sqs.send_batch(
            await api_env.sqs.queue_url(queue), [OutgoingMessage(body="{}")]
        )
    snap = (await board.get("/board/api/snapshot")).json()
    rows = {q["lane"]: q for q in snap["queues"] if q["market"] == "naver"}
    assert rows["high"]["oldest_age"] is not None
    assert rows["high"]["dead_letter_oldest_age"] is not None
    assert rows["high"]["dead_letter"] == 1
    assert rows["low"]["oldest_age"] is None  # the queue is empty
