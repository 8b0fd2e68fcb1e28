"""worker.sinks: JSON-lines file, SQS results queue and HTTP callback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from worker.sinks import (
    FileSink,
    HttpSink,
    SinkError,
    SinkRefused,
    SqsSink,
    open_sink,
)
from worker.sqs import SqsClient


@pytest.fixture
async def callback() -> AsyncIterator[tuple[str, list[dict[str, object]], list[int]]]:
    """A results backend: answers the statuses queued in `plan` (then 200), records bodies."""
    received: list[dict[str, object]] = []
    plan: list[int] = []

    async def accept(request: web.Request) -> web.Response:
        status = plan.pop(0) if plan else 200
        if status == 200:
            received.append({**await request.json(), "auth": request.headers.get("Authorization")})
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/results", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/results", received, plan
    await runner.cleanup()


async def test_file_sink_appends_json_lines(tmp_path: Path) -> None:
    """Each result is one JSON line, appended; closing twice is harmless."""
    path = tmp_path / "out" / "results.jsonl"
    async with FileSink(path) as sink:
        await sink.send({"n": 1, "text": "한글"})
        await sink.send({"n": 2})
        await sink.aclose()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2]


async def test_sqs_sink_sends_one_message_per_result(
    sqs: SqsClient, make_queue: Callable[..., Awaitable[str]]
) -> None:
    """`sqs:NAME` sends each result as a JSON message to that queue."""
    url = await make_queue("results-sink-test")
    sink = open_sink("sqs:results-sink-test", sqs)
    assert isinstance(sink, SqsSink)
    await sink.send({"id": "r1"})
    (message,) = await sqs.receive(url, max_messages=10, wait_seconds=1)
    assert json.loads(message.body) == {"id": "r1"}


async def test_sqs_sink_missing_queue_is_a_sink_error(sqs: SqsClient) -> None:
    """A results queue that does not exist fails the send as a (retryable) SinkError."""
    with pytest.raises(SinkError) as failure:
        await SqsSink(sqs, "no-such-results").send({"id": 1})
    assert not failure.value.permanent


@pytest.mark.slow
async def test_http_sink_retries_server_errors(
    callback: tuple[str, list[dict[str, object]], list[int]],
) -> None:
    """5xx and 429 answers are retried until the backend takes the result (with its token)."""
    url, received, plan = callback
    plan.extend([503, 429])
    async with HttpSink(url, token=SecretStr("s3cret")) as sink:
        await sink.send({"id": "x"})
    assert received == [{"id": "x", "auth": "Bearer s3cret"}]


async def test_http_sink_refusal_is_permanent(
    callback: tuple[str, list[dict[str, object]], list[int]],
) -> None:
    """A 4xx refusal is not retried and says so (the message is dead-lettered)."""
    url, received, plan = callback
    plan.append(422)
    async with HttpSink(url) as sink:
        with pytest.raises(SinkError) as failure:
            await sink.send({"id": "y"})
    assert failure.value.permanent
    assert received == []


async def test_http_sink_gives_up_after_its_attempts() -> None:
    """An unreachable backend fails with a retryable SinkError after the set attempts."""
    async with HttpSink("http://127.0.0.1:9/results", attempts=2) as sink:
        with pytest.raises(SinkError) as failure:
            await sink.send({"id": "z"})
    assert not failure.value.permanent


async def test_a_result_over_the_queue_limit_goes_in_parts_that_join_back(
    sqs: SqsClient, make_queue: Callable[..., Awaitable[str]]
) -> None:
    """Issue 21: a 2 MB result into an SQS results queue was released at every receive
    (never fits, never dead-lettered). A 4 MB one now goes as parts that each fit the
    queue's size; joined in part order their `data_text` is the result's data."""
    url = await make_queue("results-parts-test")
    data = {"orders": [{"n": index, "name": '김"민준' * 20} for index in range(20_000)]}
    record = {"id": "big", "kind": "collect_orders", "data": data}
    assert len(json.dumps(record, ensure_ascii=False).encode()) > 4_000_000
    await SqsSink(sqs, "results-parts-test").send(record)
    parts: list[dict[str, Any]] = []
    while True:
        got = await sqs.receive(url, max_messages=10, wait_seconds=1)
        if not got:
            break
        parts.extend(json.loads(message.body) for message in got)
    limit = int((await sqs.attributes(url, ["MaximumMessageSize"]))["MaximumMessageSize"])
    assert limit <= 1_048_576  # SQS's largest (MESSAGE_BYTES)
    assert all(len(json.dumps(part).encode()) <= limit for part in parts)
    parts.sort(key=lambda part: part["part"])
    assert [part["part"] for part in parts] == list(range(1, parts[0]["parts"] + 1))
    assert {part["id"] for part in parts} == {"big"}
    assert json.loads("".join(part["data_text"] for part in parts)) == data


async def test_parts_fit_the_queues_own_message_size(sqs: SqsClient) -> None:
    """A queue whose MaximumMessageSize is 1,024 bytes gets parts of at most that."""
    url = await sqs.create_queue("results-small-test", {"MaximumMessageSize": "1024"})
    data = ["주문" * 40] * 40
    await SqsSink(sqs, "results-small-test").send({"id": "small", "data": data})
    parts: list[dict[str, Any]] = []
    while got := await sqs.receive(url, max_messages=10, wait_seconds=1):
        parts.extend(json.loads(message.body) for message in got)
    assert len(parts) > 1
    assert all(len(json.dumps(part, ensure_ascii=False).encode()) <= 1024 for part in parts)
    parts.sort(key=lambda part: part["part"])
    assert json.loads("".join(part["data_text"] for part in parts)) == data


async def test_a_result_that_can_never_fit_is_refused_for_good(
    sqs: SqsClient, make_queue: Callable[..., Awaitable[str]]
) -> None:
    """Over `max_parts` parts: `SinkRefused` (a dead letter with the reason), never a wait."""
    await make_queue("results-never")
    sink = SqsSink(sqs, "results-never", max_bytes=1_000, max_parts=3)
    with pytest.raises(SinkRefused, match="does not fit in 3 parts of 1000 bytes"):
        await sink.send({"id": "huge", "data": "x" * 10_000})
