"""Admission: runs `lanes.budget` checks atomically in Redis (`acquire.lua`, its
ARGV built by `lanes.protocol`). The shared state's writes are `lanes.pauses`, its
reads `lanes.usage`; a `Limiter` carries one of each (`pauses`, `usage`).

One Lua script call (one round trip) per acquire, and in `admit` one per batch
of this process's concurrent requests; a lane booked ahead is asked once per
process for all its callers (`Limiter._park`, docs/DESIGN.md "The budget"). Time
is the Redis server's `TIME`, so any number of workers on any number of machines
share one clock.

`admit` ends with a confirm step (docs/DESIGN.md rules 5 and 9): a caller that
wakes later than its tolerance after its admitted moment gives its entry back
and asks again, and one whose moment falls in a pause set meanwhile (a 429
elsewhere, a quota answer) is placed after it. The pause is known locally
through `lanes.watch`, so the confirm step costs no Redis command.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from lanes.batcher import AcquireBatcher, Grant
from lanes.budget import Admission, Budget
from lanes.clock import ClockBounds
from lanes.epoch import prepare as prepare_epochs
from lanes.errors import BudgetTimeout, BudgetUnavailable
from lanes.lateness import Lateness, WakeLead
from lanes.pauses import Pauses
from lanes.policy import DEFAULT_POLICIES, Lane, LanePolicies
from lanes.protocol import US as _US
from lanes.protocol import acquire_call, lane_checks, lua, member, unavailable
from lanes.resource import AsyncResource
from lanes.usage import Usage
from lanes.watch import PauseWatch

__all__ = ["Limiter", "Ticket"]

log = structlog.get_logger("lanes.limiter")

# A refused acquire sleeps its exact wait plus up to this much, so that callers
# refused at one moment do not all come back at one moment.
_JITTER_S = 0.02
# The share of a budget's margin a request may spend between its admitted moment
# and leaving its process; the rest covers the way from the process to the market.
_TOLERANCE_SHARE = 0.6
# Stale entries are pruned by about one acquire in this many (they are never read).
_PRUNE_EVERY = 16
# Before sleeping on a grant, the clock's uncertainty is brought under this share of
# the tolerance with at most this many `TIME` round trips (see `_sleep_until`).
_SHARP_SHARE = 0.5
_SHARPEN_TRIES = 2
# A process's first admit loads the scripts and samples the clock this many times
# first (`warm_up`), so that its first grants are neither slowed nor judged late.
_WARM_TIME_TRIPS = 3
# How long warming up waits for the pause subscription to be live.
_WARM_WATCH_S = 1.0
# The most a caller wakes ahead of its moment (then waits the rest by yielding).
_MOST_LEAD_S = 0.01
# A lane booked ahead is asked by one round trip per process for all its callers, once
# it is booked only `keep` ahead: a share of its horizon, at most `_KEEP_MOST_S`. Until
# then its callers wait without asking (an ask would be placed after the booking anyway)
# and together they find the slots that came free meanwhile. `keep` covers the round
# trip and a late wake of the asking process, so no slot passes unused meanwhile.
_KEEP_SHARE = 0.2
_KEEP_MOST_S = 0.2
# Only lanes with a ceiling below the whole limit (their horizon one window) have rooms:
# high's are booked up to the limiter's horizon ahead and its asks are few already, and
# with rooms booking it only `keep` ahead loaded runs saw refusals not seen without.


_Moved = tuple["Ticket | None", tuple[str, ...]]


@dataclass(slots=True)
class Ticket:
    """An admitted request: it may leave its process until `send_by` (time.monotonic()),
    unless its budget was paused meanwhile (as far as `watch` knows). Found late where it
    was to be sent, `renew()` moves it to now, in place, where the market has room."""

    budget: Budget
    members: tuple[str, ...]
    at: float  # the admitted moment, Redis time in seconds
    send_by: float
    watch: PauseWatch | None = None
    lane: Lane = Lane.HIGH
    limiter: Limiter | None = field(default=None, repr=False)

    def may_send(self) -> bool:
        """Check last, right before sending (no Redis command): not late past the
        tolerance, and no pause of the budget known to this process."""
        if time.monotonic() > self.send_by:
            return False
        return self.watch is None or self.watch.paused(self.budget.name) == 0

    async def renew(self) -> bool:
        """Late when its connection was ready (a new connection's handshake took the
        tolerance): give the entries back and take the moment now where the market's
        windows have room, so that the request leaves on that connection; raising
        there instead would lose the new connection, and the next attempt would wait
        for another handshake. False: not to be sent now; `members` are then what its
        holder must still give back."""
        if self.limiter is None or not self.members:
            return False
        return await self.limiter.renew(self)


@dataclass(slots=True)
class _Room:
    """When a lane of a budget, booked ahead for this process, is next asked
    (time.monotonic()): every caller of the lane waits for it, and they ask in one round
    trip. `exact`: the earliest moment the answer named."""

    at: float
    exact: float
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.opened.set()


@dataclass(slots=True)
class _Slot:
    """A reservation its caller sleeps on, which another caller of this process may send
    on instead when the owner has not woken by half its tolerance past the moment."""

    grant: Grant
    asked: float
    lane: Lane
    taken: bool = False


class Limiter(AsyncResource):
    """Admits requests to shared budgets held in Redis.

    The caller owns the Redis client (see `lanes.store.RedisStore`); every Redis
    failure is raised as `BudgetUnavailable`: nothing is admitted without Redis.
    The limiter owns one pub/sub subscription (`lanes.watch`), opened on first need.

    `restart_guard` (docs/DESIGN.md rule 10): a budget with no state counts its past
    as full up to now unless its slot's epoch (`lanes.epoch`) shows that Redis kept
    every write since earlier. Only a Redis nobody else can have used (the tests'
    own) may turn it off. `tolerance`: seconds
    a request may leave after its admitted moment; default the budget's margin x 0.6
    (a margin of 0 leaves lateness unchecked).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        policies: LanePolicies = DEFAULT_POLICIES,
        *,
        horizon: float = 30.0,
        restart_guard: bool = True,
        tolerance: float | None = None,
    ) -> None:
        self._client = client
        self._policies = policies
        self._horizon = horizon
        self._restart_guard = restart_guard
        self._tolerance = tolerance
        self._acquire = client.register_script(lua("acquire.lua"))
        self._keep_us: dict[str, int] = {}
        self._batcher = AcquireBatcher(self._submit, self.release, boarding=self._board)
        self.watch = PauseWatch(client)
        self.pauses = Pauses(client, self.watch)  # the shared state's writes
        self.usage = Usage(client)  # and its reads
        # What an admit runs; the bucket's and usage's scripts load on their first use.
        self._sources = (self._acquire.script, self.pauses.cooldown_source)
        self.lateness = Lateness()
        self.clock = ClockBounds()
        self._sharpening = asyncio.Lock()
        self._warming = asyncio.Lock()
        self._warm = False
        self.wake_lead = WakeLead(most=_MOST_LEAD_S)
        self._slots: dict[str, list[_Slot]] = {}  # budget name -> reservations slept on
        self._rooms: dict[tuple[str, Lane, int], _Room] = {}  # (budget, lane, cost) refused
        self._moves: set[asyncio.Future[Any]] = set()  # `renew`'s, finishing unwaited

    async def _close(self) -> None:
        for room in self._rooms.values():  # no timer outlives the limiter
            room.open()
        self._rooms.clear()
        await self.watch.aclose()

    def _keep(self, budget: Budget) -> int:
        # Entries matter for as long as the longest span of any lane's checks.
        keep = self._keep_us.get(budget.name)
        if keep is None:
            keep = max(
                (
                    check.span_us
                    for lane in Lane
                    for check in budget.checks(self._policies[lane].ceiling)
                ),
                default=round(budget.shortest_seconds * _US),  # a bucket alone
            )
            self._keep_us[budget.name] = keep
        return keep

    def tolerance(self, budget: Budget) -> float:
        if self._tolerance is not None:
            return self._tolerance
        if budget.margin_ms <= 0:
            return math.inf
        return budget.margin_ms / 1000 * _TOLERANCE_SHARE

    async def warm_up(self) -> None:
        """Load the scripts, sharpen the clock and name the slots' epochs before the
        first grant (once; again after a failure). Cold, the first acquire's round trip
        carries a NOSCRIPT and a script load, and a clock known only to within those slow
        round trips makes every early grant look late: the first second of a process
        would serve little."""
        if self._warm:
            return
        async with self._warming:
            if self._warm:
                return
            prepare_epochs()
            try:
                for source in self._sources:
                    await self._client.script_load(source)
                for _ in range(_WARM_TIME_TRIPS):
                    started = time.monotonic()
                    seconds, micros = await self._client.time()
                    self.clock.sample(started, time.monotonic(), seconds + micros / _US)
                # Live before the first grant: reservations then need no state read.
                await self.watch.until_live(_WARM_WATCH_S)
            except (RedisError, OSError) as exc:
                raise BudgetUnavailable(f"redis unavailable: {exc}") from exc
            self._warm = True

    async def acquire(
        self,
        budget: Budget,
        lane: Lane,
        cost: int = 1,
        *,
        max_wait: float | None = None,
    ) -> Admission:
        """Admit `cost` requests in `lane` now, or reserve the earliest moment within `max_wait`.

        Reservations reach at most the limiter's horizon (high) or one window (lanes
        with a ceiling below 1). Not granted: nothing was recorded, and the answer's
        `wait` is how long until asking again can succeed.
        """
        (grant,) = await self._submit(budget, [(lane, cost)], max_wait=max_wait)
        return grant.admission

    async def _submit(
        self,
        budget: Budget,
        requests: Sequence[tuple[Lane, int]],
        give_back: Sequence[str] = (),
        *,
        max_wait: float | None = None,
        unpaced: bool = False,
    ) -> list[Grant]:
        """One round trip for `requests` (lane, cost), of any lanes, in order; `unpaced`
        leaves out the pace's checks (the market's windows and the lanes' ceilings stay)."""
        for lane, cost in requests:
            if not 1 <= cost <= budget.capacity:
                raise ValueError(
                    f"cost {cost} outside 1..{budget.capacity} for budget {budget.name}"
                )
            # A lane's ceiling may hold fewer than the budget: such a cost could never be placed.
            checks = lane_checks(budget, self._policies, lane, unpaced)
            room = min((check.cap for check in checks), default=cost)  # a bucket alone: none
            if cost > room:
                raise ValueError(
                    f"cost {cost} over the {room} the {lane.value} lane may hold at once "
                    f"in budget {budget.name}"
                )
        token = secrets.token_hex(6)
        keys, args = acquire_call(
            budget,
            self._policies,
            requests,
            {lane: self._lane_horizon(budget, lane, max_wait) for lane, _ in requests},
            token=token,
            keep_us=self._keep(budget),
            prune=random.randrange(_PRUNE_EVERY) == 0,
            restart_guard=self._restart_guard,
            give_back=give_back,
            unpaced=unpaced,
        )
        started = time.monotonic()
        with unavailable(budget):
            now_us, known, *flat = await self._acquire(keys=keys, args=args)
        self.clock.sample(started, time.monotonic(), int(now_us) / _US)
        grants = []
        for index, (lane, cost) in enumerate(requests):
            granted, wait_us, moment_us = flat[3 * index : 3 * index + 3]
            members = tuple(member(lane, token, index + 1, unit) for unit in range(1, cost + 1))
            admission = Admission(bool(granted), int(wait_us) / _US, int(moment_us) / _US)
            grants.append(Grant(admission, members if granted else (), int(known)))
        return grants

    def _lane_horizon(self, budget: Budget, lane: Lane, max_wait: float | None) -> float:
        horizon = self._horizon
        if self._policies[lane].ceiling < 1.0:
            # Reservations far ahead would hold windows the paid lane may need (with a
            # limit of 1/s every reserved second is one high cannot use): one window only.
            horizon = min(horizon, budget.shortest_seconds)
        if max_wait is not None:
            horizon = min(horizon, max(0.0, max_wait))
        return horizon

    async def admit(
        self,
        budget: Budget,
        lane: Lane,
        cost: int = 1,
        *,
        deadline: float | None = None,
    ) -> Ticket:
        """Sleep until `cost` requests are admitted and confirmed; check `may_send()` last.

        Concurrent admits of this process on one budget and lane share round trips
        (see `lanes.batcher`). `deadline` is a `time.monotonic()` moment: when
        admission cannot come before it, `BudgetTimeout` is raised at once (no
        pointless sleep). A reservation given up by cancellation is handed back.
        A caller that wakes too late is moved to now where it can (`_move_to_now`).
        """
        tolerance = self.tolerance(budget)
        unused: tuple[str, ...] = ()
        found_late: tuple[str, ...] = ()
        roomed = False  # this caller waited for its lane's room
        await self.warm_up()
        while True:
            if found_late:
                moved, unused = await self._move_to_now(budget, lane, cost, found_late, tolerance)
                found_late = ()
                if moved is not None:
                    return moved
            if self.lateness.due():
                await self.lateness.flush(self._client)
            if deadline is not None and time.monotonic() > deadline:
                raise BudgetTimeout(budget.name, 0.0)
            if not unused and (handed := await self._take_due(budget, lane, cost, tolerance)):
                return handed
            room = self._rooms.get((budget.name, lane, cost))
            if not unused and room is not None:
                # Its lane was refused here: wait with the others, ask with them; a
                # deadline before their ask but after the exact wait asks alone then.
                if deadline is None or room.at <= deadline:
                    self.watch.enter()  # kept live for the grants the room will bring
                    try:
                        await room.opened.wait()
                    finally:
                        self.watch.leave()
                    roomed = True
                    continue
                if room.exact > deadline:
                    raise BudgetTimeout(budget.name, room.exact - time.monotonic())
                await asyncio.sleep(room.exact - time.monotonic())
            asked = time.monotonic()
            # A room's ask goes at once: its lane is booked only `keep` ahead.
            grant = await self._batcher.request(budget, lane, cost, unused, at_once=roomed)
            unused, roomed = (), False
            admission = grant.admission
            if not admission.granted:
                if deadline is not None and time.monotonic() + admission.wait > deadline:
                    raise BudgetTimeout(budget.name, admission.wait)
                if not self._park(budget, lane, cost, admission):
                    await asyncio.sleep(admission.wait + random.uniform(0, _JITTER_S))
                continue
            self._park(budget, lane, cost, admission)
            if deadline is not None and admission.at + self.clock.bounds()[1] > deadline:
                await self.release(budget, grant.members)
                raise BudgetTimeout(budget.name, admission.wait)
            reserved = admission.wait > 0
            slot = None
            if reserved:
                self.watch.enter()
                slot = _Slot(grant, asked, lane)
                self._slots.setdefault(budget.name, []).append(slot)
            try:
                await self._sleep_until(budget, admission.at, tolerance, grant.members, slot)
                if slot is not None:
                    if slot.taken:  # sent by another caller while this one woke late
                        continue
                    self._drop(budget, slot)
                # Measured with the bounds as they are now: sharper than at grant time.
                earliest = admission.at + self.clock.bounds()[0]
                late = time.monotonic() - earliest
                on_time = late <= tolerance
                self.lateness.record(late, on_time=on_time)
                if not on_time:
                    log.debug("budget.late_given_back", budget=budget.name, late=round(late, 4))
                    found_late = grant.members
                    continue
                if reserved and not await self._reservation_holds(budget, grant, asked):
                    await self.release(budget, grant.members)
                    continue
            finally:
                if slot is not None:
                    self._drop(budget, slot)
                if reserved:
                    self.watch.leave()
            return Ticket(
                budget, grant.members, admission.at, earliest + tolerance, self.watch, lane, self
            )

    def _park(self, budget: Budget, lane: Lane, cost: int, answer: Admission) -> bool:
        """After an answer for `lane`, granted or refused: where the lane is booked more
        than `keep` ahead (its answer's moment; a refusal's lies a horizon past its wait,
        a pause's is now), its next ask is a room, at the end of the wait and once it is
        booked only `keep` ahead: every caller of the lane in this process waits for it
        and they ask in one round trip, plus jitter so that processes do not ask
        together. A room only ever moves later (docs/DESIGN.md rule 4: exact waits, one
        round trip places many, none polls). Whether the caller has a room to wait for
        (a refused caller without one sleeps its exact wait)."""
        if self._policies[lane].ceiling >= 1.0:
            return False  # high: see `_KEEP_MOST_S`
        horizon = self._lane_horizon(budget, lane, None)
        keep = min(_KEEP_MOST_S, horizon * _KEEP_SHARE)
        now = time.monotonic()
        booked = answer.at + self.clock.bounds()[0] - now
        if answer.granted and booked <= keep:
            return False
        exact = now + (0.0 if answer.granted else answer.wait)
        at = max(exact, now + booked - keep) + random.uniform(0, _JITTER_S)
        key = (budget.name, lane, cost)
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = _Room(at, exact)
        elif room.at < at:
            room.at, room.exact = at, max(room.exact, exact)
            assert room.timer is not None
            room.timer.cancel()
        else:
            return True
        loop = asyncio.get_running_loop()
        room.timer = loop.call_later(max(0.0, at - now), self._open, key)
        return True

    def _open(self, key: tuple[str, Lane, int]) -> None:
        """A room's moment: its callers ask, and with them those of the budget's other
        rooms, so that the lanes of a mixed load share round trips (an early ask costs
        nothing: it is placed after its lane's booking, as it would be later)."""
        for other, room in list(self._rooms.items()):
            if other[0] == key[0]:
                room.open()
                del self._rooms[other]  # its callers hold it; the next answer makes anew

    def _board(self, budget: Budget) -> bool:
        """A round trip of `budget` is about to leave: the rooms whose exact wait has
        passed open now and their callers ride along (it would be asked for them a
        moment later anyway, in a round trip of their own). Whether any opened."""
        now = time.monotonic()
        boarded = False
        for key, room in list(self._rooms.items()):
            if key[0] == budget.name and room.exact <= now:
                room.open()
                del self._rooms[key]
                boarded = True
        return boarded

    def _drop(self, budget: Budget, slot: _Slot) -> None:
        """The slot is its owner's now (or gone): no other caller may take it."""
        if not slot.taken:
            slot.taken = True
            self._slots[budget.name].remove(slot)

    async def _take_due(
        self, budget: Budget, lane: Lane, cost: int, tolerance: float
    ) -> Ticket | None:
        """A late wake loses no slot: a caller about to ask takes a reservation of this
        process whose moment is surely reached and whose owner has not woken by half its
        tolerance past it (a busy loop, a starved task), and sends on it now, within the
        tolerance; the owner, waking, asks anew. Only a reservation of the same cost in
        a lane whose ceiling is not above this caller's (a lower lane never spends what
        high was given). No round trip: it saves the caller's acquire."""
        slots = self._slots.get(budget.name)
        if not slots:
            return None
        low, high = self.clock.bounds()
        now = time.monotonic()
        ceiling = self._policies[lane].ceiling
        for slot in slots:
            at = slot.grant.admission.at
            late = now - (at + low)
            if (
                at + high <= now
                and tolerance / 2 <= late <= tolerance
                and len(slot.grant.members) == cost
                and self._policies[slot.lane].ceiling <= ceiling
            ):
                self._drop(budget, slot)
                if not await self._reservation_holds(budget, slot.grant, slot.asked):
                    await self.release(budget, slot.grant.members)
                    return None
                self.lateness.handed()
                return Ticket(
                    budget, slot.grant.members, at, at + low + tolerance, self.watch, lane, self
                )
        return None

    async def _move_to_now(
        self, budget: Budget, lane: Lane, cost: int, late: tuple[str, ...], tolerance: float
    ) -> tuple[Ticket | None, tuple[str, ...]]:
        """A caller that woke late gives its entries back and, in the same round trip, is
        admitted at once where the market's windows and its lane's ceilings have room
        now; the pace is left out (it is not the market's rule, and one request sent at
        once is no burst). Its slot is moved, not lost: in a budget saturated with
        reservations, asking anew would join the end of the queue, and the slot given
        back would pass unused. Returns the ticket, or None and the entries the next
        round trip must give back (late again after this one)."""
        (grant,) = await self._submit(budget, [(lane, cost)], late, max_wait=0.0, unpaced=True)
        if not grant.admission.granted:
            return None, ()
        earliest = grant.admission.at + self.clock.bounds()[0]
        if time.monotonic() - earliest > tolerance:
            return None, grant.members
        self.lateness.moved()
        at = grant.admission.at
        return Ticket(budget, grant.members, at, earliest + tolerance, self.watch, lane, self), ()

    async def renew(self, ticket: Ticket) -> bool:
        """`Ticket.renew`: its entries given back, the ticket moved to now where it can.

        It runs inside the request, whose timeout counts it, and a timeout there would
        look like an answer lost after sending: a round trip longer than the tolerance
        (a slow Redis) is not waited for, its moved ticket would be late anyway.
        """
        budget = ticket.budget
        tolerance = self.tolerance(budget)
        self.lateness.given_back()
        move = asyncio.ensure_future(
            self._move_to_now(budget, ticket.lane, len(ticket.members), ticket.members, tolerance)
        )
        try:
            async with asyncio.timeout(tolerance if math.isfinite(tolerance) else None):
                moved, unused = await asyncio.shield(move)
        except TimeoutError:
            # Not cut off: what Redis granted meanwhile is given back once it is known, or
            # its room would be lost (a whole call of a bucket, on a loaded host often).
            self._moves.add(move)
            move.add_done_callback(lambda done: self._give_back_move(budget, done))
            return False
        except BudgetUnavailable:
            return False  # its entries then only waste their slots: never unsafe
        if moved is None:
            ticket.members = unused  # its holder gives them back, outside the request
            return False
        ticket.members, ticket.at, ticket.send_by = moved.members, moved.at, moved.send_by
        return True

    async def wait(
        self,
        budget: Budget,
        lane: Lane,
        cost: int = 1,
        *,
        deadline: float | None = None,
    ) -> float:
        """`admit`, returning the seconds spent waiting."""
        started = time.monotonic()
        await self.admit(budget, lane, cost, deadline=deadline)
        return time.monotonic() - started

    async def _reservation_holds(self, budget: Budget, grant: Grant, asked: float) -> bool:
        """Whether a reservation may still be used at its moment: no pause began meanwhile
        that covers it (docs/DESIGN.md rule 5), and Redis did not lose it (rule 10: a
        restart loses the reservations ahead too, and a new Redis would admit into them).

        A subscription live since before the grant tells both without a command: a pause
        is published, a restart breaks the subscription, and client tracking tells it of a
        FLUSHALL (`lanes.watch`; on one node only, so not on a Cluster). Otherwise the
        state is read: a Redis that lost its data has another `known` (or none).
        """
        if self.watch.lost_since(asked):
            return False
        if self.watch.live_since(asked) and self.watch.sees_flushes:
            return self.watch.paused(budget.name) == 0
        with unavailable(budget):
            cool, quota, known = await self._client.hmget(
                budget.state_key, ["cool_until", "quota_until", "known"]
            )
        if known is None or int(known) != grant.known:
            return False
        moment = grant.admission.at
        return all(int(value) / _US <= moment for value in (cool, quota) if value is not None)

    def _too_uncertain(self, tolerance: float) -> bool:
        low, high = self.clock.bounds()
        return high - low > tolerance * _SHARP_SHARE

    async def _sleep_until(
        self,
        budget: Budget,
        moment: float,
        tolerance: float,
        members: Sequence[str],
        slot: _Slot | None = None,
    ) -> None:
        """Sleep until the Redis `moment` is surely reached here (never early).

        A clock too uncertain to tell lateness from uncertainty (a process's
        first round trips, slowed by connecting and loading scripts) is first
        sharpened by a few `TIME` round trips, or every grant would look late.
        """
        try:
            if self._too_uncertain(tolerance):
                async with self._sharpening:  # one caller sharpens, the others reuse it
                    for _ in range(_SHARPEN_TRIES):
                        if not self._too_uncertain(tolerance):
                            break
                        started = time.monotonic()
                        with unavailable(budget):
                            seconds, micros = await self._client.time()
                        self.clock.sample(started, time.monotonic(), seconds + micros / _US)
            # Wake ahead by what this loop's wake-ups measured late (most of them), then
            # sleep the short rest: a wake-up past the tolerance would cost the slot, and
            # a short timer set from a woken caller is late by far less than a long one.
            lead = min(self.wake_lead.seconds, tolerance / 2)
            left = moment + self.clock.bounds()[1] - time.monotonic()
            if left > lead:
                started = time.monotonic()
                await asyncio.sleep(left - lead)
                self.wake_lead.record(time.monotonic() - started - (left - lead))
            rest = moment + self.clock.bounds()[1] - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)  # never early: until the moment is surely reached
        except asyncio.CancelledError:
            # Unused reservations would block the budget for nobody's benefit (unless
            # another caller took it: its entries are that caller's now).
            if slot is None or not slot.taken:
                if slot is not None:
                    self._drop(budget, slot)  # before the await: nobody takes it meanwhile
                await self.release(budget, members)
            raise

    def _give_back_move(self, budget: Budget, move: asyncio.Future[_Moved]) -> None:
        self._moves.discard(move)
        if move.cancelled() or move.exception() is not None:
            return
        moved, unused = move.result()
        members = moved.members if moved is not None else unused
        if members:
            self._moves.add(task := asyncio.ensure_future(self.release(budget, members)))
            task.add_done_callback(self._moves.discard)

    async def release(self, budget: Budget, members: Sequence[str]) -> None:
        """Hand back reservations that will not be used (best effort); a bucket's through
        the script, which returns their room to the bucket (`acquire.lua`)."""
        if not members:
            return
        if budget.bucket is not None:
            with contextlib.suppress(BudgetUnavailable):
                await self._submit(budget, [], members)
            return
        try:
            await self._client.zrem(budget.log_key, *members)
        except (RedisError, OSError):
            return  # the reservation then only wastes its slot: never unsafe
