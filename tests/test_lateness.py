"""The lateness histogram: counted locally, shared in Redis for `lanes status`."""

from __future__ import annotations

import redis.asyncio as aioredis

from lanes.lateness import Lateness, WakeLead, bucket_labels, read_lateness


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


def test_wake_lead_learns_how_late_most_wake_ups_are_and_stays_bounded() -> None:
    """Fed wake-ups late by 1..10 ms evenly, the lead settles near their 90th percentile
    (about 9 ms); it never exceeds its bound, and an idle loop's punctual wake-ups bring
    it back to nothing."""
    lead = WakeLead(most=0.02)
    for index in range(20_000):
        lead.record((1 + index % 10) / 1000)
    assert 0.008 <= lead.seconds <= 0.0105
    bounded = WakeLead(most=0.005)
    for _ in range(1000):
        bounded.record(1.0)
    assert bounded.seconds == 0.005
    for _ in range(20_000):
        lead.record(0.0)
    assert lead.seconds == 0.0
