"""Every process learns of a budget's pause (429 cooldown, quota) the moment it is set.

`lanes/pause.lua` publishes "name<TAB>ms left" on one channel; each limiter
keeps a local map of pauses, so that a caller waking from a reservation checks
the pause without a Redis command (docs/DESIGN.md rule 5). The same connection
learns of a FLUSHALL through client tracking (rule 10): a flush keeps every
connection, so nothing else shows it. The subscription is
held only while some caller of this process sleeps on a reservation (`enter`,
`leave`): no task outlives the work. While it is not confirmed live, `live` is
False and the caller asks Redis instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

__all__ = ["CHANNEL", "PauseWatch"]

CHANNEL = "lanes:pauses"
# Where client tracking tells a RESP2 connection of a FLUSHALL/FLUSHDB (data nil).
_INVALIDATE = "__redis__:invalidate"
_RETRY_S = 1.0
# The subscription outlives the last sleeper by this much, so that a busy
# budget does not subscribe again at every lull.
_LINGER_S = 1.0
log = structlog.get_logger("lanes.watch")


def _on_invalidate(
    connection: AbstractConnection, handler: Callable[[list[object]], Awaitable[None]] | None
) -> bool:
    """Set the RESP3 parser's handler of `invalidate` pushes; False where it has none."""
    setter = getattr(connection._parser, "set_invalidation_push_handler", None)
    if setter is None:
        return False
    setter(handler)
    return True


class PauseWatch:
    """This process's view of every budget's pause, kept by a subscription."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._until: dict[str, float] = {}  # budget name -> time.monotonic() when it ends
        self._task: asyncio.Task[None] | None = None
        self._live = False
        self._sleepers = 0
        self._stop: asyncio.TimerHandle | None = None
        self._live_from = math.inf  # time.monotonic() since when the subscription is live
        self._lost_at = -math.inf  # when a subscription was last lost (Redis went away)
        self._tracking = True  # until Redis refuses client tracking
        self._became_live = asyncio.Event()  # set while live

    @property
    def live(self) -> bool:
        return self._live and self._task is not None and not self._task.done()

    def live_since(self, moment: float) -> bool:
        """Live without a break since `moment` (time.monotonic()): no pause and no loss of
        Redis since then escaped this process."""
        return self.live and self._live_from <= moment

    async def until_live(self, seconds: float) -> None:
        """Subscribe and wait (at most `seconds`) until live: a process warming up, so that
        its first reservations need no state read at wake time (`live_since`)."""
        self.enter()
        try:
            if self._task is None:  # nothing to wait for (a watch turned off)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._became_live.wait()
        finally:
            self.leave()

    def lost_since(self, moment: float) -> bool:
        """The subscription broke (Redis may have restarted) or Redis was flushed after
        `moment`."""
        return self._lost_at >= moment

    def enter(self) -> None:
        """A caller sleeps on a reservation: subscribe if not yet."""
        self._sleepers += 1
        if self._stop is not None:
            self._stop.cancel()
            self._stop = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def leave(self) -> None:
        """That caller woke and confirmed; the last one ends the subscription."""
        self._sleepers -= 1
        if self._sleepers == 0 and self._task is not None:
            self._stop = asyncio.get_running_loop().call_later(_LINGER_S, self._end)

    def _end(self) -> None:
        self._stop = None
        if self._sleepers == 0 and self._task is not None:
            self._live = False
            self._became_live.clear()
            self._task.cancel()
            self._task = None

    def note(self, name: str, seconds: float) -> None:
        """`name` is paused for `seconds` from now (this process's own 429, or a message)."""
        until = time.monotonic() + seconds
        if until > self._until.get(name, 0.0):
            self._until[name] = until

    def paused(self, name: str) -> float:
        """Seconds left of `name`'s pause as far as this process knows (0: none)."""
        return max(0.0, self._until.get(name, 0.0) - time.monotonic())

    @property
    def sees_flushes(self) -> bool:
        """Whether a live subscription also learns of a FLUSHALL: not on a Cluster (one
        node's only), nor where Redis refuses client tracking (before 6, or a managed
        Redis that disables CLIENT)."""
        return self._tracking and not isinstance(self._client, RedisCluster)

    async def _track_flushes(self, pubsub: PubSub) -> tuple[str, ...]:
        """Turn on client tracking, redirected to the subscription's own connection, before
        subscribing (a subscribed RESP2 connection takes no other command): Redis then
        tells it of every FLUSHALL/FLUSHDB, as an `invalidate` push (RESP3, redis-py's
        default) or a message on `__redis__:invalidate` (RESP2), with no keys. It tracks
        no key (this connection reads none), so nothing else comes. Returns the channels."""
        if not self.sees_flushes:
            return (CHANNEL,)
        await pubsub.connect()  # type: ignore[no-untyped-call]
        connection = pubsub.connection
        assert connection is not None  # set by connect()
        try:
            await connection.send_command("CLIENT", "ID")
            own_id = await connection.read_response()
            await connection.send_command("CLIENT", "TRACKING", "on", "REDIRECT", own_id)
            await connection.read_response()
        except ResponseError as exc:  # callers then read the state at wake time instead
            self._tracking = False
            log.warning("budget.flushes_not_tracked", error=str(exc))
            return (CHANNEL,)
        # A silent reconnect would lose the tracking, and may hide a restart: start over.
        connection.register_connect_callback(self._reconnected)
        if str(connection.protocol) == "3" and _on_invalidate(connection, self._invalidated):
            return (CHANNEL,)
        return (CHANNEL, _INVALIDATE)

    async def _invalidated(self, push: list[object]) -> None:
        if push[1] is None:  # no keys: the whole dataset went
            self._flushed()

    def _flushed(self) -> None:
        # Redis lost its data with every connection kept: as good as a restart.
        self._lost_at = time.monotonic()
        log.warning("budget.redis_flushed")

    async def _reconnected(self, connection: AbstractConnection) -> None:
        raise RedisConnectionError("the pause subscription reconnected: subscribing anew")

    async def _run(self) -> None:
        # Runs while it is this watch's task: a cancel that redis-py's read swallows (it
        # can, racing its own read timeout) still ends the loop within one read.
        me = asyncio.current_task()
        while self._task is me:
            pubsub = self._client.pubsub()
            try:
                channels = await self._track_flushes(pubsub)
                await pubsub.subscribe(*channels)
                while self._task is me:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe" and message["data"] == len(channels):
                        self._live, self._live_from = True, time.monotonic()
                        self._became_live.set()
                    elif message["type"] != "message":
                        continue
                    elif message["channel"] == _INVALIDATE.encode():
                        if message["data"] is None:
                            self._flushed()
                    else:
                        name, _, left_ms = message["data"].decode().rpartition("\t")
                        self.note(name, int(left_ms) / 1000)
            except (RedisError, OSError) as exc:
                self._live, self._lost_at = False, time.monotonic()
                self._became_live.clear()
                log.warning("budget.pause_watch_lost", error=str(exc))
                await asyncio.sleep(_RETRY_S)
            finally:
                self._live = False
                self._became_live.clear()
                if pubsub.connection is not None:  # it goes back to the pool: plain again
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                    _on_invalidate(pubsub.connection, None)
                # Bounded: closing a subscription whose read was cancelled can wait on its
                # connection, and shutdown must not hang on a courtesy.
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(_RETRY_S):
                        await pubsub.aclose()

    async def aclose(self) -> None:
        if self._stop is not None:
            self._stop.cancel()
            self._stop = None
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task], timeout=2 * _RETRY_S)
