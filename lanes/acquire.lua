-- Admit `cost` requests to one budget in one lane, now or at the earliest
-- future moment within the caller's horizon (a reservation).
--
-- The budget is a sliding log: a sorted set whose scores are the moments
-- (microseconds, Redis TIME) at which admitted requests may be sent. A moment
-- may lie in the future: that is a reservation, and the caller sleeps until it.
-- Every check (cap, span) demands that no window of `span` microseconds holds
-- more than `cap` entries, counting every lane. The caller's lane decides the
-- checks: the market's windows, and the lane's ceilings as smaller caps.
--
-- KEYS[1]  the log (sorted set)              KEYS[2]  the cooldown (string, PX)
-- ARGV[1]  cost (requests)                   ARGV[2]  horizon: longest reservation (us)
-- ARGV[3]  member prefix "lane:token"        ARGV[4]  longest span of any lane's check (us)
-- ARGV[5]  number of checks, then cap_1, span_1 (us), cap_2, span_2, ...
--
-- Returns {granted (1 or 0), wait (us), moment (us)}: granted 1 means send
-- after `wait`; granted 0 means ask again after `wait`, nothing was recorded.

local cost = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local prefix = ARGV[3]
local longest = tonumber(ARGV[4])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local cooldown = redis.call('PTTL', KEYS[2])
if cooldown > 0 then
  return {0, cooldown * 1000, now}
end

local checks = tonumber(ARGV[5])
local reach = 0
for c = 0, checks - 1 do
  reach = math.max(reach, tonumber(ARGV[7 + 2 * c]))
end

-- Entries older than every lane's longest span can no longer share a window with `now`.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - longest))
local scores = {}
local flat = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - reach), '+inf', 'WITHSCORES')
for i = 2, #flat, 2 do
  scores[#scores + 1] = tonumber(flat[i])
end

-- The earliest t >= from at which `cost` more entries keep every window of
-- `span` within `cap`. Windows of more than `allowed` entries are the
-- intervals [s[i + allowed], s[i] + span); t must keep [t, t + span) clear of them.
local function earliest(from, cap, span)
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

local t = now
repeat
  local moved = t
  for c = 0, checks - 1 do
    local at = earliest(t, tonumber(ARGV[6 + 2 * c]), tonumber(ARGV[7 + 2 * c]))
    if at > moved then
      moved = at
    end
  end
  local settled = moved == t
  t = moved
until settled

local wait = t - now
if wait > horizon then
  return {0, wait - horizon, t}
end

for i = 1, cost do
  redis.call('ZADD', KEYS[1], t, prefix .. ':' .. i)
end
-- The log forgets itself once its newest entry has left every window.
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + longest) / 1000) + 1000)
return {1, wait, t}
