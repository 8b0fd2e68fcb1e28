"""The lateness histogram: counted locally, shared in Redis for `lanes status`."""

from __future__ import annotations

import redis.asyncio as aioredis

from lanes.lateness import Lateness, bucket_labels, read_lateness


async def test_counts_by_bucket_and_shares_them(redis_client: aioredis.Redis) -> None:
    """Each lateness falls in one bucket; sent and given back are counted; a flush adds the
    new counts to the shared hash, which `read_lateness` returns in bucket order."""
    lateness = Lateness()
    lateness.record(0.0004, on_time=True)
    lateness.record(0.003, on_time=True)
    lateness.record(0.4, on_time=False)
    assert lateness.counts == {
        "<=1ms": 1, "sent": 2, "<=5ms": 1, "<=1000ms": 1, "given_back": 1
    }  # fmt: skip
    await lateness.flush(redis_client)
    lateness.record(2.0, on_time=False)
    await lateness.flush(redis_client)
    shared = await read_lateness(redis_client)
    assert list(shared) == ["<=1ms", "<=5ms", "<=1000ms", ">1000ms", "sent", "given_back"]
    assert shared["given_back"] == 2
    assert bucket_labels()[-1] == ">1000ms"
