"""The market client: URLs as signed and sent, and every kind of answer sorted right."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
import structlog

from lanes import Lane, Limiter, RedisStore
from lanes.limiter import Ticket
from markets import (
    AttemptsExhausted,
    Call,
    JobRequest,
    MarketClient,
    PermanentError,
    RateLimited,
    RetryLater,
    TransientError,
)
from markets.client import retry_after_seconds, send_check_trace
from markets.errors import NotSent
from tests.fixtures_markets import (
    MakeMarkets,
    Running,
    Scripted,
    acme_config,
    markets_config,
    scripted_table,
)


async def _send(
    client: MarketClient,
    endpoint: str = "answer",
    *,
    path: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    call = Call(endpoint, path=path or {}, params=params or {})
    return await client.send(call, Lane.HIGH, seller="s-1")


async def test_success_returns_the_parsed_body(
    scripted: Scripted, make_markets: MakeMarkets
) -> None:
    """A 2xx answer is success; its JSON body comes back parsed."""
    markets = await make_markets(acme_config(scripted))
    scripted.answers.append((201, {}, {"created": 1}))
    assert await _send(markets.client("acme")) == {"created": 1}


async def test_query_and_path_are_sent_as_given(
    scripted: Scripted, make_markets: MakeMarkets
) -> None:
    """Params keep their order, None is left out, placeholders are filled and escaped."""
    markets = await make_markets(acme_config(scripted))
    client = markets.client("acme")
    await _send(client, "item", path={"item": "a b/c"}, params={"b": 2, "a": None, "c": [1, 2]})
    assert scripted.seen == ["/items/a%20b%2Fc?b=2&c=1&c=2"]


async def test_a_missing_placeholder_is_permanent(
    scripted: Scripted, make_markets: MakeMarkets
) -> None:
    """A path placeholder without a value is a PermanentError before anything is sent."""
    markets = await make_markets(acme_config(scripted))
    with pytest.raises(PermanentError, match="needs 'item'"):
        await _send(markets.client("acme"), "item")
    assert scripted.seen == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_4xx_is_permanent_with_the_markets_code_and_message(
    scripted: Scripted, make_markets: MakeMarkets, status: int
) -> None:
    """Other 4xx answers are permanent and carry the market's own code and message."""
    markets = await make_markets(acme_config(scripted))
    scripted.answers.append((status, {}, {"code": "BAD_PARAM", "message": "status is\nrequired"}))
    with pytest.raises(PermanentError) as raised:
        await _send(markets.client("acme"))
    error = raised.value
    assert (error.status, error.code, error.message) == (status, "BAD_PARAM", "status is required")
    assert error.market == "acme"
    assert error.endpoint == "answer"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_5xx_is_transient(scripted: Scripted, make_markets: MakeMarkets, status: int) -> None:
    """5xx (and 408) answers are transient, with the status kept."""
    markets = await make_markets(acme_config(scripted))
    scripted.answers.append((status, {}, {"code": "GW.PROXY", "message": "upstream"}))
    with pytest.raises(TransientError) as raised:
        await _send(markets.client("acme"))
    assert raised.value.status == status
    assert not isinstance(raised.value, RateLimited)


@pytest.mark.slow
async def test_a_timeout_is_transient(scripted: Scripted, make_markets: MakeMarkets) -> None:
    """No answer within the market's timeout is transient."""
    markets = await make_markets(acme_config(scripted))
    with pytest.raises(TransientError, match="no answer within"):
        await _send(markets.client("acme"), "slow")


async def test_a_refused_connection_is_transient(make_markets: MakeMarkets) -> None:
    """A market that cannot be reached is transient, not permanent."""
    from scripts.local.services import free_port

    markets = await make_markets(acme_config(scripted_table(f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(NotSent, match="cannot connect"):
        await _send(markets.client("acme"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), (None, 0.5)],
)
async def test_429_is_rate_limited_and_cools_the_budget(
    scripted: Scripted, make_markets: MakeMarkets, header: str | None, expected: float
) -> None:
    """A 429 is RateLimited and cools the budget for Retry-After (or the market's backoff)."""
    markets = await make_markets(acme_config(scripted))
    scripted.answers.append((429, {"Retry-After": header} if header else {}, {"code": "SLOW"}))
    client = markets.client("acme")
    with pytest.raises(RateLimited) as raised:
        await _send(client)
    assert raised.value.retry_after == pytest.approx(expected)
    usage = await markets._limiter.usage.read(client.budget("answer", "s-1"))
    assert 0 < usage.cooldown <= expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After may be seconds or an HTTP date; garbage is ignored."""
    now = time.time()
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(
        30, abs=1
    )
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.slow
async def test_a_429_cools_the_budget_for_a_second_client(
    scripted: Scripted, make_markets: MakeMarkets
) -> None:
    """After one worker's 429, another worker's call to that budget waits out the cooldown."""
    config = acme_config(scripted)
    first, second = await make_markets(config), await make_markets(config)
    scripted.answers.append((429, {"Retry-After": "1"}, {}))
    request = JobRequest("call", "acme", "s-1", {"endpoint": "answer"})
    with pytest.raises(AttemptsExhausted):
        await first.run(request, Lane.HIGH, max_attempts=1)
    started = time.monotonic()
    await second.run(request, Lane.HIGH)
    assert time.monotonic() - started >= 0.8
    assert len(scripted.seen) == 2


async def test_a_deadline_inside_the_cooldown_is_retry_later(
    scripted: Scripted, make_markets: MakeMarkets
) -> None:
    """A caller whose deadline ends inside a cooldown gets RetryLater, without sending."""
    config = acme_config(scripted)
    first, second = await make_markets(config), await make_markets(config)
    scripted.answers.append((429, {"Retry-After": "30"}, {}))
    request = JobRequest("call", "acme", "s-1", {"endpoint": "answer"})
    with pytest.raises(AttemptsExhausted):
        await first.run(request, Lane.LOW, max_attempts=1)
    with pytest.raises(RetryLater) as raised:
        await second.run(request, Lane.HIGH, deadline=time.monotonic() + 1)
    assert raised.value.retry_after > 20
    assert len(scripted.seen) == 1


async def test_advertised_limit_below_config_is_adopted(
    naver_sim: Running, make_markets: MakeMarkets
) -> None:
    """Naver says 2 rps; a config of 5 rps adopts 2 rps for every worker, and says so."""
    config = markets_config(
        naver=naver_sim.url, extra={"naver": {"groups": {"origin_products": {"rps": 5}}}}
    )
    markets = await make_markets(config)
    with structlog.testing.capture_logs() as logs:
        await markets.run(
            JobRequest("get_product", "naver", "s", {"origin_product_no": 5000000}), Lane.HIGH
        )
    warnings = [e for e in logs if e["event"] == "market.advertised_limit_adopted"]
    assert [(w["endpoint"], w["configured_rps"], w["advertised_rps"]) for w in warnings] == [
        ("origin_product", 5.0, 2.0)
    ]
    usage = await markets._limiter.usage.read(markets.client("naver").budget("origin_product", "s"))
    assert (usage.limit, usage.limit_source) == (2, "GNCP-GW-RateLimit")


async def _checked_client(
    scripted: Scripted, store: RedisStore, exit_stack: AsyncExitStack, hook: aiohttp.TraceConfig
) -> tuple[MarketClient, Limiter]:
    """A client of `scripted` (25 ms margin: a 15 ms tolerance) on a session with `hook`
    first and the write-point checks last."""
    session = await exit_stack.enter_async_context(
        aiohttp.ClientSession(trace_configs=[hook, send_check_trace()])
    )
    limiter = await exit_stack.enter_async_context(Limiter(store.client, restart_guard=False))
    config = acme_config(scripted).markets["acme"].model_copy(update={"margin_ms": 25.0})
    return MarketClient("acme", config, session, limiter), limiter


async def test_a_send_late_when_its_connection_is_ready_is_moved_to_now(
    scripted: Scripted, store: RedisStore, exit_stack: AsyncExitStack
) -> None:
    """Between the check before a request and its first byte, other hooks run (a side
    effect's "posting" mark is a Redis round trip). When that makes the ticket late, the
    connection-ready check gives its entry back (docs/DESIGN.md rule 9) and takes the
    moment now, where the window has room: the request leaves on that connection, once,
    admitted after the stall."""
    stalls = [0.1]  # the first request stalls past the 15 ms tolerance of a 25 ms margin
    stalled_until: list[float] = []

    async def stall(*_args: object) -> None:
        if stalls:
            time.sleep(stalls.pop())  # noqa: ASYNC251 - a starved process: every task stops
            stalled_until.append(time.time())  # Redis runs on this host's clock

    slow_hook = aiohttp.TraceConfig()
    slow_hook.on_request_start.append(stall)
    client, limiter = await _checked_client(scripted, store, exit_stack, slow_hook)
    assert await client.send(Call("answer"), Lane.HIGH, seller=None)
    assert scripted.seen == ["/answer"]
    log = await store.client.zrange(client.budget("answer", None).log_key, 0, -1, withscores=True)
    assert len(log) == 1  # the late entry was given back
    assert log[0][1] / 1_000_000 >= stalled_until[0] - 0.002  # the one sent was admitted after
    # Moved at least once (a starved host may find the moved ticket late again, and move it).
    assert limiter.lateness.counts.get("moved", 0) >= 1


async def test_every_new_connection_slower_than_the_tolerance_still_sends(
    scripted: Scripted, store: RedisStore, exit_stack: AsyncExitStack
) -> None:
    """A new connection's handshake (TLS to a remote market) can take longer than the
    tolerance, every time. Stopping the request then would lose the new connection (aiohttp
    pools it only after the request) and the next attempt would wait for another handshake,
    for ever; instead the ticket is moved to the moment the connection is ready."""

    handshakes: list[float] = []

    async def handshake(*_args: object) -> None:
        handshakes.append(time.monotonic())
        time.sleep(0.05)  # noqa: ASYNC251 - longer than the 15 ms tolerance

    slow_connect = aiohttp.TraceConfig()
    slow_connect.on_connection_create_start.append(handshake)
    client, limiter = await _checked_client(scripted, store, exit_stack, slow_connect)
    for _ in range(3):
        assert await client.send(Call("answer"), Lane.HIGH, seller=None)
    assert scripted.seen == ["/answer"] * 3
    assert len(handshakes) == 1  # then the pooled connection is reused
    assert limiter.lateness.counts.get("moved", 0) >= 1  # (a starved host may move more)


def _stall_first_body(seconds: float) -> tuple[aiohttp.TraceConfig, list[float]]:
    """A hook that stalls the process before the first request body's bytes are written
    (where aiohttp writes a body: in a task of its own on Python < 3.12, which a loaded loop
    runs tens of milliseconds after the connection was ready); the stall's end on the list."""
    stalled_until: list[float] = []

    async def stall(*_args: object) -> None:
        if not stalled_until:
            time.sleep(seconds)  # noqa: ASYNC251 - a starved process: every task stops
            stalled_until.append(time.time())  # Redis runs on this host's clock

    hook = aiohttp.TraceConfig()
    hook.on_request_chunk_sent.append(stall)
    return hook, stalled_until


async def test_a_post_whose_body_is_written_late_is_moved_not_sent_late(
    scripted: Scripted, store: RedisStore, exit_stack: AsyncExitStack
) -> None:
    """A POST's bytes leave with its body's first chunk, after the connection was ready.
    When that write comes past the tolerance, the late entry is given back and the request
    is admitted at the moment it is written (docs/DESIGN.md rule 9: late is never over):
    the one entry in the log is from after the stall, and the market saw the POST once."""
    hook, stalled_until = _stall_first_body(0.1)  # past the 15 ms tolerance
    client, limiter = await _checked_client(scripted, store, exit_stack, hook)
    sent: list[bool] = []
    call = Call("post", json={"key": "k-1"})
    assert await client.send(call, Lane.HIGH, seller=None, on_sent=lambda: sent.append(True))
    assert scripted.seen == ["/answer"]
    assert sent == [True]
    log = await store.client.zrange(client.budget("post", None).log_key, 0, -1, withscores=True)
    assert len(log) == 1  # the late entry was given back
    assert log[0][1] / 1_000_000 >= stalled_until[0] - 0.002
    assert limiter.lateness.counts.get("moved", 0) >= 1


async def test_a_late_body_without_room_now_is_given_back_and_is_no_call(
    scripted: Scripted,
    store: RedisStore,
    exit_stack: AsyncExitStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the market has no room at the moment a late body is to be written, the POST is
    stopped before a byte left (`LateSend`, though aiohttp raises it from the body's own
    task as a connection error): its entry is given back, it is no call (`on_sent` not
    called for it, no "outcome unknown"), and it is admitted anew and sent once."""
    hook, stalled_until = _stall_first_body(0.1)
    client, _limiter = await _checked_client(scripted, store, exit_stack, hook)
    renew = Ticket.renew
    refused: list[Ticket] = []

    async def no_room_once(ticket: Ticket) -> bool:
        if not refused:
            refused.append(ticket)
            return False
        return await renew(ticket)

    monkeypatch.setattr(Ticket, "renew", no_room_once)
    sent: list[bool] = []
    call = Call("post", json={"key": "k-1"})
    assert await client.send(call, Lane.HIGH, seller=None, on_sent=lambda: sent.append(True))
    assert len(refused) == 1
    assert scripted.seen == ["/answer"]  # the stopped POST never reached the market
    assert sent == [True]  # only the one that left counts as a call
    log = await store.client.zrange(client.budget("post", None).log_key, 0, -1, withscores=True)
    assert len(log) == 1  # the stopped one's entry was given back
    assert log[0][1] / 1_000_000 >= stalled_until[0] - 0.002
