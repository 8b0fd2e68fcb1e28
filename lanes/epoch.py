"""Since when a Redis slot's data is whole: the epoch that tells a new budget from a lost one.

A budget without state is either new (its past is empty) or lost with its Redis
data (its past is unknown and counts as full, docs/DESIGN.md rule 10). Each
Cluster hash slot holds one epoch key, "run_id:since" (the Redis server's run id,
Redis time in microseconds), written when missing or left by another server run.
It has no expiry. A FLUSHALL, a restart (with or without persistence) or a
failover removes it or leaves another run's: the slot's past is then unknown up
to now. Present and of this run, the slot kept every write since `since`, so a
budget of that slot without state had none: its past is known from `since`.

One key per slot, not one per Redis: a script may touch only keys of its own slot,
and one node keeping its data proves nothing of another's (nor of a slot that
moved). Each slot's key is named by a hash tag that falls into that slot.
"""

from __future__ import annotations

import functools
from binascii import crc_hqx
from importlib import resources

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["epoch_key", "epoch_keys", "mark_epochs", "prepare"]

# Epoch keys written per pipeline round trip by `mark_epochs`.
_CHUNK = 1024


@functools.cache
def _tags() -> tuple[str, ...]:
    """For each slot, the first tag "e<n>" that falls into it (about 150,000 CRCs, once
    per process, about 0.05 s: `Limiter.warm_up` does it before the first grant)."""
    tags: list[bytes | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    left, number = REDIS_CLUSTER_HASH_SLOTS, 0
    while left:
        tag = b"e%d" % number
        slot = crc_hqx(tag, 0) % REDIS_CLUSTER_HASH_SLOTS  # what `key_slot` computes
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        number += 1
    return tuple(tag.decode() for tag in tags if tag is not None)


def prepare() -> None:
    """Compute the slots' tags now (at start), not inside a first request's wait."""
    _tags()


def epoch_key(budget_name: str) -> str:
    """The epoch key of the slot that holds `budget_name`'s keys (hash tag {budget_name})."""
    slot = key_slot(budget_name.encode())
    return f"lanes:epoch:{{{_tags()[slot]}}}"


def epoch_keys() -> list[str]:
    """Every slot's epoch key."""
    return [f"lanes:epoch:{{{tag}}}" for tag in _tags()]


async def mark_epochs(client: aioredis.Redis) -> int:
    """Write each slot's epoch where it is missing or of another server run (`lanes
    provision`): budgets first used a longest window later start with an empty past.
    Returns how many were written."""
    source = resources.files("lanes").joinpath("epoch.lua").read_text(encoding="utf-8")
    script = client.register_script(source)
    await client.script_load(source)  # (every primary of a Cluster) then EVALSHA only
    keys = epoch_keys()
    written = 0
    for start in range(0, len(keys), _CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for key in keys[start : start + _CHUNK]:
                await script(keys=[key], client=pipe)
            written += sum(int(reply) for reply in await pipe.execute())
    return written
