"""How late admitted requests leave their process: a histogram, in the logs and in Redis.

Lateness is the time between a request's admitted moment and the moment it is
confirmed to leave (docs/DESIGN.md rule 9). Each process counts locally (no
Redis command per request) and adds its counts to one shared hash every
`flush_every` seconds, where `lanes status` reads them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

__all__ = [
    "BUCKETS_MS",
    "LATENESS_KEY",
    "Lateness",
    "WakeLead",
    "bucket_labels",
    "read_lateness",
]

log = structlog.get_logger("lanes.lateness")

# Upper bounds of the buckets, milliseconds; the last bucket is open.
BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 1000)
LATENESS_KEY = "lanes:lateness"
_KEEP_S = 3600  # the shared hash shows about the last hour of counts


def bucket_labels() -> list[str]:
    """`<=1ms`, ..., `<=1000ms`, `>1000ms`, in order."""
    return [f"<={bound}ms" for bound in BUCKETS_MS] + [f">{BUCKETS_MS[-1]}ms"]


class Lateness:
    """Counts of lateness per bucket, and of requests given back for being too late."""

    def __init__(self, *, flush_every: float = 10.0) -> None:
        self._labels = bucket_labels()
        self._pending: dict[str, int] = {}
        self._total: dict[str, int] = {}
        self._flush_every = flush_every
        self._last_flush = time.monotonic()

    def record(self, seconds: float, *, on_time: bool) -> None:
        index = bisect.bisect_left(BUCKETS_MS, max(0.0, seconds) * 1000)
        self._count(self._labels[index], "sent" if on_time else "given_back")

    def given_back(self) -> None:
        """A request found late where it was to be sent (`Ticket.renew`)."""
        self._count("given_back")

    def handed(self) -> None:
        """A reservation whose caller had not woken by half its tolerance was sent by
        another caller of the process (`Limiter.admit`); its owner asks anew."""
        self._count("handed", "sent")

    def moved(self) -> None:
        """A request given back was admitted again at once and sent (`Limiter.admit`)."""
        self._count("moved", "sent")

    def _count(self, *names: str) -> None:
        for name in names:
            self._pending[name] = self._pending.get(name, 0) + 1
            self._total[name] = self._total.get(name, 0) + 1

    @property
    def counts(self) -> Mapping[str, int]:
        """Everything this process recorded."""
        return dict(self._total)

    def due(self) -> bool:
        return bool(self._pending) and time.monotonic() - self._last_flush >= self._flush_every

    async def flush(self, client: aioredis.Redis) -> None:
        """Add this process's new counts to the shared hash and log them (best effort)."""
        pending, self._pending = self._pending, {}
        self._last_flush = time.monotonic()
        log.info("budget.lateness", **pending)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for name, count in pending.items():
                    pipe.hincrby(LATENESS_KEY, name, count)
                pipe.expire(LATENESS_KEY, _KEEP_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("budget.lateness_not_shared", error=str(exc))


class WakeLead:
    """How late this process's event loop wakes a sleeper (a busy loop, a starved CPU):
    a running estimate of the `quantile` of the overshoot of `asyncio.sleep`, so that a
    caller can wake that much ahead of its moment and wait the rest precisely, instead
    of waking past its tolerance and losing its slot (docs/DESIGN.md rule 9).

    A stochastic quantile estimate (no history kept): each sample moves it up by
    `step` x quantile when above, down by `step` x (1 - quantile) when below. Never
    above `most`: a lead that long would only spin the loop.
    """

    def __init__(self, *, quantile: float = 0.9, step: float = 0.0005, most: float) -> None:
        self._quantile = quantile
        self._step = step
        self._most = most
        self.seconds = 0.0

    def record(self, overshoot: float) -> None:
        if overshoot > self.seconds:
            self.seconds = min(self._most, self.seconds + self._step * self._quantile)
        else:
            self.seconds = max(0.0, self.seconds - self._step * (1 - self._quantile))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def read_lateness(client: aioredis.Redis) -> dict[str, int]:
    """The shared counts (`lanes status`), bucket labels first, then sent, given back and
    moved (given back, then admitted again at once and sent)."""
    raw = await client.hgetall(LATENESS_KEY)
    found = {_text(key): int(value) for key, value in raw.items()}
    order = [*bucket_labels(), "sent", "given_back", "moved", "handed"]
    return {name: found[name] for name in order if name in found}
