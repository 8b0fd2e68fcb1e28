"""POST /v1/jobs as one whole request: a missing queue sends nothing, a request cut short
(its deadline, SQS failing midway) answers 207 with what it sent, and a repeat with the same
Idempotency-Key sends only what is missing, under the same job ids. Real Redis, moto's SQS
server, the app through httpx."""

from __future__ import annotations

import httpx

from lanes import Lane
from scripts.tools.provision import provision
from tests.fixtures_api import ApiEnv, MakeClient, collect_job
from worker.queues import QueueName
from worker.sqs import SqsClient


def _ids(answer: httpx.Response) -> list[tuple[int, str, str]]:
    return [(job["index"], job["id"], job["message_id"]) for job in answer.json()["jobs"]]


async def test_a_repeat_after_a_missing_queue_sends_each_job_once(
    api_env: ApiEnv, make_client: MakeClient, sqs: SqsClient
) -> None:
    """10 Coupang and 10 Naver jobs under one key, Naver's queues not provisioned: 503 and
    nothing sent; after `lanes provision`, the repeat sends the 20 once, and a further repeat
    replays that answer (fails on the code that sent Coupang's 10 before the 503 and all 20
    again on the repeat, with new ids)."""
    prefix = f"{api_env.settings.queue_prefix}p"
    await provision(sqs, prefix=prefix, markets=["coupang"], visibility_timeout=10)
    env = ApiEnv(api_env.settings.model_copy(update={"queue_prefix": prefix}), api_env.config, sqs)
    client = await make_client(env)
    jobs = [collect_job("coupang", i) for i in range(10)] + [
        collect_job("naver", i) for i in range(10)
    ]
    headers = {"Idempotency-Key": "two-markets"}

    first = await client.post("/v1/jobs", params={"lane": "high"}, json=jobs, headers=headers)
    assert first.status_code == 503, first.text
    assert "lanes provision" in first.json()["detail"]
    assert await env.depth("coupang", Lane.HIGH) == 0

    await provision(sqs, prefix=prefix, markets=["naver"], visibility_timeout=10)
    again = await client.post("/v1/jobs", params={"lane": "high"}, json=jobs, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["count"] == 20
    assert again.json()["unsent"] == []
    assert await env.depth("coupang", Lane.HIGH) == 10
    assert await env.depth("naver", Lane.HIGH) == 10

    third = await client.post("/v1/jobs", params={"lane": "high"}, json=jobs, headers=headers)
    assert third.status_code == 202
    assert third.headers["Idempotent-Replayed"] == "true"
    assert third.json() == again.json()
    assert await env.depth("coupang", Lane.HIGH) == 10
    assert await env.depth("naver", Lane.HIGH) == 10


async def test_a_request_cut_by_sqs_is_207_and_its_repeat_sends_the_rest_under_the_same_ids(
    api_env: ApiEnv, client: httpx.AsyncClient, sqs: SqsClient
) -> None:
    """Naver's queue is deleted after the app looked it up: the 15 Coupang jobs are sent,
    the 5 Naver ones are not (207, `unsent`, `stopped` naming SQS). Once the queue is back,
    the repeat sends the 5 only; the 15 keep their ids and message ids."""
    warm = await client.post("/v1/jobs", params={"lane": "medium"}, json=collect_job("naver", 99))
    assert warm.status_code == 202  # the app now knows the queue's URL
    queue = QueueName(api_env.settings.queue_prefix, "naver", Lane.MEDIUM).queue
    url = await sqs.queue_url(queue)
    async with sqs._calling("DeleteQueue", queue) as raw:
        await raw.delete_queue(QueueUrl=url)

    jobs = [collect_job("coupang", i) for i in range(15)] + [
        collect_job("naver", i) for i in range(5)
    ]
    headers = {"Idempotency-Key": "cut-by-sqs"}
    first = await client.post("/v1/jobs", params={"lane": "medium"}, json=jobs, headers=headers)
    assert first.status_code == 207, first.text
    body = first.json()
    assert (body["count"], body["unsent"]) == (15, [15, 16, 17, 18, 19])
    assert body["stopped"].startswith("SQS failed")

    async with SqsClient(endpoint_url=api_env.settings.sqs_endpoint_url) as fresh:
        # a client of its own: `sqs` still has the deleted queue's URL cached
        await provision(fresh, prefix=api_env.settings.queue_prefix, markets=["naver"],
                        visibility_timeout=10)  # fmt: skip
    again = await client.post("/v1/jobs", params={"lane": "medium"}, json=jobs, headers=headers)
    assert again.status_code == 202, again.text
    assert _ids(again)[:15] == _ids(first)
    assert [job["index"] for job in again.json()["jobs"]] == list(range(20))
    assert await api_env.depth("coupang", Lane.MEDIUM) == 15
    assert await api_env.depth("naver", Lane.MEDIUM) == 5


async def test_past_the_deadline_each_repeat_sends_the_next_part(
    api_env: ApiEnv, make_client: MakeClient
) -> None:
    """With a deadline of 0 a request sends one batch of 10, then answers 207: three repeats
    of a 25-job request send 10, 10 and 5, each job once and under one id; the key with
    another request is 409 meanwhile; a repeat after the whole was sent replays it."""
    hurried = api_env.settings.model_copy(update={"api_deadline": 0.0})
    client = await make_client(ApiEnv(hurried, api_env.config, api_env.sqs))
    jobs = [collect_job("coupang", i) for i in range(25)]
    headers = {"Idempotency-Key": "in-parts"}

    answers = []
    for sent, status in ((10, 207), (20, 207), (25, 202)):
        answer = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs, headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.json()["count"] == sent
        assert answer.json()["unsent"] == list(range(sent, 25))
        assert await api_env.depth("coupang", Lane.LOW) == sent
        answers.append(answer)
        if sent == 10:
            assert "deadline" in answer.json()["stopped"]
            other = await client.post(
                "/v1/jobs", params={"lane": "low"}, json=jobs[:3], headers=headers
            )
            assert other.status_code == 409
            assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _ids(answers[2])[:10] == _ids(answers[0])
    assert _ids(answers[2])[:20] == _ids(answers[1])
    assert len({job_id for _, job_id, _ in _ids(answers[2])}) == 25

    replay = await client.post("/v1/jobs", params={"lane": "low"}, json=jobs, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == answers[2].json()
    assert await api_env.depth("coupang", Lane.LOW) == 25


async def test_without_a_key_a_cut_request_lists_what_it_did_not_send(
    api_env: ApiEnv, make_client: MakeClient
) -> None:
    """No key: the 207 still says which jobs were sent and which were not (the client sends
    those again itself)."""
    hurried = api_env.settings.model_copy(update={"api_deadline": 0.0})
    client = await make_client(ApiEnv(hurried, api_env.config, api_env.sqs))
    answer = await client.post(
        "/v1/jobs", params={"lane": "high"}, json=[collect_job("coupang", i) for i in range(15)]
    )
    assert answer.status_code == 207
    assert [job["index"] for job in answer.json()["jobs"]] == list(range(10))
    assert answer.json()["unsent"] == list(range(10, 15))
    assert await api_env.depth("coupang", Lane.HIGH) == 10
