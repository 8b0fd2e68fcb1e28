-- Admit a batch of requests to one budget in one lane, each now or at its
-- earliest future moment within the caller's horizon (a reservation).
--
-- The budget is a sliding log: a sorted set whose scores are the moments
-- (microseconds, Redis TIME) at which admitted requests may be sent. A moment
-- may lie in the future: that is a reservation, and the caller sleeps until it.
-- Every check (cap, span) demands that no window of `span` microseconds holds
-- more than `cap` entries, counting every lane. The caller's lane decides the
-- checks: the market's windows, and the lane's ceilings as smaller caps.
-- The requests of a batch are placed one after another, in order.
--
-- KEYS[1]  the log (sorted set)              KEYS[2]  the cooldown (string, PX)
-- ARGV[1]  horizon: longest reservation (us) ARGV[2]  member prefix "lane:token"
-- ARGV[3]  longest span of any lane's check (us)
-- ARGV[4]  number of checks C, then cap_1, span_1 (us), ..., cap_C, span_C (us)
-- then     number of requests R, then cost_1, ..., cost_R (requests each)
--
-- Returns, per request, {granted (1 or 0), wait (us), moment (us)}, flattened:
-- granted 1 means send after `wait` (its entries are "prefix:r:1".."prefix:r:cost");
-- granted 0 means ask again after `wait`, nothing was recorded for it.

local horizon = tonumber(ARGV[1])
local prefix = ARGV[2]
local longest = tonumber(ARGV[3])
local checks = tonumber(ARGV[4])
local requests = tonumber(ARGV[5 + 2 * checks])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local result = {}
local cooldown = redis.call('PTTL', KEYS[2])
if cooldown > 0 then
  for r = 1, requests do
    result[#result + 1] = 0
    result[#result + 1] = cooldown * 1000
    result[#result + 1] = now
  end
  return result
end

-- Entries older than every lane's longest span can no longer share a window
-- with `now`: they are dropped in bulk, not on every call.
local flat = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local scores = {}
local stale = 0
for i = 2, #flat, 2 do
  local score = tonumber(flat[i])
  if score < now - longest then
    stale = stale + 1
  else
    scores[#scores + 1] = score
  end
end
if stale >= 32 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - longest))
end

-- The earliest t >= from at which `cost` more entries keep every window of
-- `span` within `cap`. Windows of more than `allowed` entries are the
-- intervals [s[i + allowed], s[i] + span); t must keep [t, t + span) clear of them.
local function earliest(from, cap, span, cost)
  local allowed = cap - cost
  local t = from
  for i = 1, #scores - allowed do
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

local function place(cost)
  local t = now
  repeat
    local moved = t
    for c = 0, checks - 1 do
      local at = earliest(t, tonumber(ARGV[5 + 2 * c]), tonumber(ARGV[6 + 2 * c]), cost)
      if at > moved then
        moved = at
      end
    end
    local settled = moved == t
    t = moved
  until settled
  return t
end

local added = {}
for r = 1, requests do
  local cost = tonumber(ARGV[5 + 2 * checks + r])
  local t = place(cost)
  local wait = t - now
  if wait > horizon then
    result[#result + 1] = 0
    result[#result + 1] = wait - horizon
  else
    -- Keep `scores` sorted so that the next request of the batch sees this one.
    local at = #scores + 1
    while at > 1 and scores[at - 1] > t do
      at = at - 1
    end
    for unit = 1, cost do
      table.insert(scores, at, t)
      added[#added + 1] = t
      added[#added + 1] = prefix .. ':' .. r .. ':' .. unit
    end
    result[#result + 1] = 1
    result[#result + 1] = wait
  end
  result[#result + 1] = t
end

if #added > 0 then
  redis.call('ZADD', KEYS[1], unpack(added))
  -- The log forgets itself once its newest entry (perhaps an earlier caller's
  -- reservation) has left every window.
  local newest = scores[#scores]
  redis.call('PEXPIRE', KEYS[1], math.ceil((newest - now + longest) / 1000) + 1000)
end
return result
