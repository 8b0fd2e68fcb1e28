-- Admit a batch of requests to one budget, from one or more lanes, each now or
-- at its earliest future moment within its lane's horizon (a reservation).
--
-- The budget is a sliding log: a sorted set whose scores are the moments
-- (microseconds, Redis TIME) at which admitted requests may be sent. A moment
-- may lie in the future: that is a reservation, and the caller sleeps until it.
-- Every check (cap, span) demands that no window of `span` microseconds holds
-- more than `cap` entries, counting every lane. The caller's lane decides the
-- checks: the market's windows, and the lane's ceilings as smaller caps.
--
-- Cost does not grow with the log (docs/DESIGN.md rule 4): "exact" checks (the
-- shortest window's) read only the entries of their own span and ahead, which
-- the cap bounds; longer windows are checked by rank lookups (O(log n)): t is
-- allowed when at most cap - cost entries lie after t - span. That counts the
-- reservations after t too, so it can only refuse more than needed, never less.
--
-- The state hash holds what every worker must share: the cooldown after a 429,
-- a quota pause, an advertised lower limit, and `known`, the moment since when
-- this budget's past is known. A budget without state is new or was lost with
-- Redis's data (docs/DESIGN.md rule 10); its slot's epoch (lanes/epoch.py) tells
-- which. Present and of this server run, the slot kept every write since the
-- epoch, so the budget's past is empty since then: `known` is the epoch. Missing
-- (a FLUSHALL, a restart or a failover to an empty replica, a Redis never marked)
-- or left by another run (a restart with persistence, a failover): the past is
-- unknown up to now, and the epoch is written anew.
--
-- KEYS[1]  the log (sorted set)              KEYS[2]  the state (hash)
-- KEYS[3]  the slot's epoch (string "run_id:us", no expiry; one per hash slot)
-- ARGV[1]  member token                      ARGV[2]  longest span of any check (us)
-- ARGV[3]  prune stale entries now (1 or 0)  ARGV[4]  restart guard (1 or 0)
-- ARGV[5]  number of lanes L; per lane: its name, its horizon (longest
--          reservation, us), its number of checks C, then cap, span (us),
--          exact (1/0) per check
-- then     number of requests R; per request: its lane (1..L), its cost
-- then     number of entries G to give back first, then their members
-- then     lending idle headroom (docs/DESIGN.md rule 2, "Lending"): lend (1/0),
--          hold (us: how long a call marks its lane's demand), reach (us: how far
--          ahead a lent moment may lie); per lane: its ceiling (ppm), whether its
--          calls mark demand (1/0), then per check 1 when the check is a lent
--          ceiling (the lane's share of the shortest window), else 0
-- then     the bucket (the BUCKET block below): 0 for none, or 1, then the
--          emission interval T (us per call), the bucket's size (calls), the
--          margin (us), then per lane (1..L): its cap (calls)
-- KEYS[4]  the demand marks (hash: lane ceiling in ppm -> until, us; expires by itself)
-- KEYS[5]  the bucket: its theoretical arrival time and its last raise by a market's
--          header (string "tat:raised", us; with a bucket only; lanes/bucket.lua)
--
-- With a bucket, every request is granted now or refused with its exact wait.
-- Returns Redis `now` (us) and `known` (us: which Redis dataset granted this, see
-- lanes/limiter.py), then per request {granted (1 or 0), wait (us), moment (us)}:
-- granted 1 means send after `wait` (its entries are "lane:token:r:1".."lane:token:r:cost");
-- granted 0 means ask again after `wait`, nothing was recorded for it.

local token = ARGV[1]
local longest = tonumber(ARGV[2])
local cursor = 5

local function next_arg()
  cursor = cursor + 1
  return ARGV[cursor]
end

local lanes = {}
local caps, spans, exact = {}, {}, {}
for l = 1, tonumber(ARGV[5]) do
  local lane = {name = next_arg(), horizon = tonumber(next_arg()), first = #caps + 1}
  for c = 1, tonumber(next_arg()) do
    caps[#caps + 1] = tonumber(next_arg())
    spans[#spans + 1] = tonumber(next_arg())
    exact[#exact + 1] = next_arg() == '1'
  end
  lane.last = #caps
  lanes[l] = lane
end
local requests = tonumber(next_arg())
local lane_of, cost_of = {}, {}
local total = 0
for r = 1, requests do
  lane_of[r] = lanes[tonumber(next_arg())]
  cost_of[r] = tonumber(next_arg())
  total = total + cost_of[r]
end
local gives = tonumber(next_arg())
local gives_from = cursor + 1
cursor = cursor + gives

-- Lending: parse (see the header) ----------------------------------------------
local lend = next_arg() == '1'
local lend_hold = tonumber(next_arg())
local lend_reach = tonumber(next_arg())
for l = 1, #lanes do
  local lane = lanes[l]
  lane.ppm = tonumber(next_arg())
  lane.marks = next_arg() == '1'
  lane.lent = {}
  for c = lane.first, lane.last do
    lane.lent[c] = next_arg() == '1'
  end
end
-- -------------------------------------------------------------------------------
-- BUCKET (issue 19): read after the give-backs, the last of ARGV.
local bucket = nil
if tonumber(ARGV[cursor + 1] or '0') == 1 then
  cursor = cursor + 1
  bucket = {interval = tonumber(next_arg()), size = tonumber(next_arg()), margin = tonumber(next_arg())}
  for l = 1, #lanes do
    lanes[l].bucket_cap = tonumber(next_arg())
  end
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local state = {}
local flat_state = redis.call('HGETALL', KEYS[2])
for i = 1, #flat_state, 2 do
  state[flat_state[i]] = flat_state[i + 1]
end

local known = tonumber(state['known'] or '')
if known == nil then
  known = 0
  if ARGV[4] == '1' then
    local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
    local epoch = redis.call('GET', KEYS[3]) or ''
    local epoch_run, since = string.match(epoch, '^(%w+):(%d+)$')
    if epoch_run == run then
      known = tonumber(since)
    else
      known = now
      redis.call('SET', KEYS[3], run .. ':' .. string.format('%.0f', now))
    end
  end
  redis.call('HSET', KEYS[2], 'known', known)
  if #flat_state == 0 then  -- made here; one an advertised limit made keeps its expiry
    redis.call('PEXPIRE', KEYS[2], math.ceil((longest + 5000000) / 1000))
  end
end
-- A state that holds only `known` and the log's expiry memo lives as long as the log
-- (an idle budget leaves no key; made anew, `known` comes back from the slot's epoch);
-- one with a pause or an advertised limit keeps the day its writer gave it
-- (lanes/pause.lua, Limiter.advertise).
local plain_state = true
for field in pairs(state) do
  plain_state = plain_state and (field == 'known' or field == 'log_until')
end

-- Lending: a lane may go past its lent ceilings while no lane above it has marked
-- demand (called within `lend_hold`); every call of a marking lane marks it anew.
if lend then
  local marks = redis.call('HGETALL', KEYS[4])
  for l = 1, #lanes do
    local lane = lanes[l]
    lane.lends = next(lane.lent) ~= nil
    for i = 1, #marks, 2 do
      if tonumber(marks[i]) > lane.ppm and tonumber(marks[i + 1]) > now then
        lane.lends = false
      end
    end
  end
  local marked = false
  for l = 1, #lanes do
    if lanes[l].marks then
      redis.call('HSET', KEYS[4], lanes[l].ppm, string.format('%.0f', now + lend_hold))
      marked = true
    end
  end
  if marked then
    redis.call('PEXPIRE', KEYS[4], math.ceil(lend_hold / 1000) + 1000)
  end
end
-- -------------------------------------------------------------------------------

-- BUCKET: the moments of the calls given back (they woke late, they never left),
-- read before their entries are removed; their room is returned below.
local returned = {}
if bucket and gives > 0 then
  for i = gives_from, gives_from + gives - 1 do
    local s = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or '')
    if s ~= nil and s <= now then
      returned[#returned + 1] = s
    end
  end
end

if gives > 0 then
  redis.call('ZREM', KEYS[1], unpack(ARGV, gives_from, gives_from + gives - 1))
end

-- BUCKET: `tat` (see the BUCKET block below) and when `lanes/bucket.lua` last raised
-- it; stored as "tat:raised" (us). A call given back at s, after the last raise, is
-- taken out of the level, every round trip, whether or not a call is granted:
-- without it, the level minus one call, or the level the calls admitted after s
-- alone would make, whichever is more. Removing one arrival lowers a leaky bucket's
-- level by at most a call, and never below what the later arrivals make of it, so
-- this is never below the bucket's level without the call (here `tat` per call is
-- the market's interval, not the slowdown's step: less returned, never more). Only
-- calls of the log's span can be given back (older entries are pruned), so every
-- later call is in the log. A raise after s set the level to the market's, which
-- never saw the call: returning it then would count it twice: nothing is returned.
-- On a loaded host most of a burst can wake late; returning only what a move to now
-- spent lost those calls (8 x 20 high callers: 60 of the 100 calls of 30 s).
local tat, raised, changed = 0, 0, false
if bucket then
  local held = redis.call('GET', KEYS[5]) or '0:0'
  local held_tat, held_raised = string.match(held, '^(%d+):?(%d*)$')
  raised = tonumber(held_raised) or 0
  local floor = known + bucket.size * bucket.interval
  tat = math.max(tonumber(held_tat) or 0, floor)
  for _, s in ipairs(returned) do
    if s > raised then
      local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. s, '+inf', 'WITHSCORES')
      local alone = 0
      for i = 2, #later, 2 do
        alone = math.max(alone, tonumber(later[i])) + bucket.interval
      end
      local without = math.max(tat - bucket.interval, alone, floor)
      changed = changed or without < tat
      tat = without
    end
  end
end
local function store_bucket()
  local left = math.ceil((tat + 5000000 - now) / 1000)
  redis.call('SET', KEYS[5], string.format('%.0f:%.0f', tat, raised), 'PX', math.max(1, left))
end
if changed then
  store_bucket()
end

local result = {now, known}
local paused = math.max(tonumber(state['cool_until'] or '0'), tonumber(state['quota_until'] or '0'))
if paused > now then
  for r = 1, requests do
    result[#result + 1] = 0
    result[#result + 1] = paused - now
    result[#result + 1] = now
  end
  return result
end

-- An advertised lower limit scales every cap (never up) until it expires; so does
-- the slowdown after a 429 (lanes/pause.lua), doubling back from the cooldown's end.
local scale = 1
if tonumber(state['adv_until'] or '0') > now then
  scale = math.min(1, tonumber(state['adv_ppm']) / 1000000)
end
local slow_step = tonumber(state['slow_step'] or '0')
if slow_step > 0 then
  local grown = 2 ^ (math.max(0, now - tonumber(state['slow_from'])) / slow_step)
  scale = math.min(scale, tonumber(state['slow_ppm']) / 1000000 * grown)
end

local exact_span = 0
for c = 1, #caps do
  caps[c] = math.max(1, math.floor(caps[c] * scale))
  if exact[c] and spans[c] > exact_span then
    exact_span = spans[c]
  end
end

if ARGV[3] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - longest))
end

-- Entries older than every exact span can share no exact window with now.
local scores = {}
local flat = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - exact_span), '+inf', 'WITHSCORES')
for i = 2, #flat, 2 do
  scores[#scores + 1] = tonumber(flat[i])
end

-- The earliest t >= from at which `cost` more entries keep every window of
-- `span` within `cap`. Windows of more than `allowed` entries are the
-- intervals [s[i + allowed], s[i] + span); t must keep [t, t + span) clear of them.
local function earliest_exact(from, cap, span, cost)
  local allowed = cap - cost
  if allowed < 0 then  -- never fits (the limiter refuses such a cost before asking)
    return math.huge
  end
  local t = from
  -- Entries more than `span` before `from` end no interval past it: skip them
  -- (binary search), so a short pacing span costs O(log n), not a pass over the log.
  local lo, hi = 1, #scores + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if scores[mid] + span > from then
      hi = mid
    else
      lo = mid + 1
    end
  end
  for i = lo, #scores - allowed do
    local starts = scores[i + allowed]
    local ends = scores[i] + span
    if t + span <= starts then
      break
    end
    if starts < ends and t < ends then
      t = ends
    end
  end
  return t
end

-- Long windows: t is allowed once at most cap - cost entries lie after t - span,
-- that is once the (cap - cost + 1)-th newest entry has left the span.
local function earliest_ranked(from, cap, span, cost)
  local k = cap - cost
  if k < 0 then
    return math.huge
  end
  local nth = redis.call('ZRANGE', KEYS[1], -(k + 1), -(k + 1), 'WITHSCORES')
  if #nth == 0 then
    return from
  end
  return math.max(from, tonumber(nth[2]) + span)
end

-- A long window with room for the whole batch (one ZCOUNT) needs no rank lookups.
local roomy = {}
for c = 1, #caps do
  if not exact[c] then
    local count = redis.call('ZCOUNT', KEYS[1], '(' .. (now - spans[c]), '+inf')
    roomy[c] = count + total <= caps[c]
  end
end

-- `lent`: without the lane's lent ceilings (only the market's checks and longer ceilings).
local function place(lane, cost, lent)
  local t = now
  for c = lane.first, lane.last do
    -- Windows reaching back before `known` count as full.
    if not (lent and lane.lent[c]) and known + spans[c] > t then
      t = known + spans[c]
    end
  end
  repeat
    local moved = t
    for c = lane.first, lane.last do
      local at = moved
      if lent and lane.lent[c] then
        at = moved
      elseif exact[c] then
        at = earliest_exact(t, caps[c], spans[c], cost)
      elseif not roomy[c] then
        at = earliest_ranked(t, caps[c], spans[c], cost)
      end
      if at > moved then
        moved = at
      end
    end
    local settled = moved == t
    t = moved
  until settled
  return t
end

-- BUCKET (issue 19): a leaky bucket of `size` calls draining one call per
-- `interval` us, checked exactly by GCRA. `tat` (the theoretical arrival time, us)
-- is when the bucket would be empty again: its level at t is (tat - t) / interval
-- calls. A call of cost c at t raises tat to max(tat, t) + c x interval, and is
-- allowed when the level then stays within the lane's cap: max(tat, t) + c x
-- interval - t <= cap x interval - margin. So the earliest t is
-- tat + c x interval - (cap x interval - margin), exactly, however full the log.
-- The margin (us) widens the bucket's time as it widens windows: arrivals spread
-- by up to the margin cannot fill the market's bucket past its size. The lane's
-- cap is its ceiling's share of the size. No lane reserves in a bucket: a
-- reservation ahead raises the level now (eating the room the lanes above must
-- find). A caller
-- is granted now or told exactly when; high is told sooner than the lanes below
-- (its cap is higher), so it takes the refill first while it waits. The 429
-- slowdown and an advertised limit stretch the interval (a smaller scale). A
-- lost state counts as full (rule 10): tat is at least `known` + size x interval,
-- so a bucket whose past is unknown starts with no burst, at the refill rate. Its
-- key expires when the bucket would be empty. `tat` was read, and the calls given
-- back returned, after the give-backs (above): a late call moved to now costs only
-- its move.
local step = 0
if bucket then
  step = math.ceil(bucket.interval / scale)
end

local function bucket_earliest(lane, cost)
  local room = lane.bucket_cap * bucket.interval - bucket.margin
  if cost * step > room then
    return math.huge
  end
  return math.max(now, tat + cost * step - room)
end

local added = {}
local granted = false
local newest = scores[#scores] or now
for r = 1, requests do
  local lane, cost = lane_of[r], cost_of[r]
  local horizon = lane.horizon
  local t = place(lane, cost, false)
  local lent_wait = nil
  if lane.lends and t > now then
    -- Lent only at once (within the reach): entries lent ahead would hold windows a
    -- higher lane arriving now may need, so its wait stays within one shortest window.
    -- A loan that comes sooner than the lane's own reservation is asked for again
    -- then, rather than slept on that later reservation.
    local lent_t = place(lane, cost, true)
    if lent_t <= now + lend_reach then
      t = lent_t
    elseif lent_t < t then
      t = lent_t
      lent_wait = lent_t - now - lend_reach
    end
  end
  if bucket then
    t = math.max(t, bucket_earliest(lane, cost))
    horizon = 0
    -- Nothing is reserved in a bucket: the refusal's wait (t - now) is already exact.
    lent_wait = nil
  end
  local wait = t - now
  if lent_wait ~= nil then
    result[#result + 1] = 0
    result[#result + 1] = lent_wait
  elseif wait > horizon then
    -- An hour at most: a cap that can never be met (an advertised limit below
    -- the cost) must still give a finite answer.
    t = math.min(t, now + horizon + 3600000000)
    result[#result + 1] = 0
    result[#result + 1] = t - now - horizon
  else
    -- Keep `scores` sorted so that the next request of the batch sees this one.
    local at = #scores + 1
    while at > 1 and scores[at - 1] > t do
      at = at - 1
    end
    local members = {}
    for unit = 1, cost do
      table.insert(scores, at, t)
      members[#members + 1] = t
      members[#members + 1] = lane.name .. ':' .. token .. ':' .. r .. ':' .. unit
    end
    if t > newest then
      newest = t
    end
    local ranked = false
    for c = lane.first, lane.last do
      ranked = ranked or (not exact[c] and not roomy[c])
    end
    if ranked then
      -- Rank lookups read the sorted set itself: it must hold this batch's entries.
      redis.call('ZADD', KEYS[1], unpack(members))
    else
      for i = 1, #members do
        added[#added + 1] = members[i]
      end
    end
    if bucket then
      tat = math.max(tat, t) + cost * step
    end
    granted = true
    result[#result + 1] = 1
    result[#result + 1] = wait
  end
  result[#result + 1] = t
end

if #added > 0 then
  redis.call('ZADD', KEYS[1], unpack(added))
end
-- The log forgets itself once its newest entry (perhaps an earlier caller's
-- reservation) has left every window, with 5 s to spare. Setting that at every grant
-- was two of a busy round trip's seven commands, so a grant sets it EXPIRY_SLACK
-- past what it needs and remembers the moment in the state (`log_until`, us); the
-- grants that moment still covers set nothing. `newest` is the newest entry of the
-- whole log (every reservation lies after now - exact_span, in `scores`), so the
-- moment never shortens another caller's expiry. A log emptied (a give-back, a
-- prune, a release) is deleted with its expiry and made anew by a later ZADD
-- without one: that round trip read no entry of the exact span before its ZADD
-- (#flat == 0), and always sets the expiry, whatever the memo says.
local EXPIRY_SLACK = 10000000  -- us
if granted then
  local needed = newest + longest + 5000000
  local memo = tonumber(state['log_until'] or '')
  if #flat == 0 or memo == nil or memo < needed then
    local log_until = needed + EXPIRY_SLACK
    local keep = math.ceil((log_until - now) / 1000)
    redis.call('PEXPIRE', KEYS[1], keep)
    redis.call('HSET', KEYS[2], 'log_until', string.format('%.0f', log_until))
    if plain_state then
      redis.call('PEXPIRE', KEYS[2], keep)
    end
  end
end
-- BUCKET: kept until it would be empty, with 5 s to spare (like the log).
if granted and bucket then
  store_bucket()
end
return result
