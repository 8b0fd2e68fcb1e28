-- Pause a whole budget for every worker: after a 429 (rate) or a quota answer.
--
-- Rate: the cooldown is the market's Retry-After, else base x 2^level, never
-- longer than max. It escalates once per cooldown: a 429 of a request admitted
-- before the current cooldown ended (in flight when it began) does not escalate
-- it, but the pause runs again from that answer. The level decays to 0 when the
-- budget was served for a full window after the last cooldown ended: the refused
-- request was admitted at least `decay_after` after that end, and requests were
-- admitted in between (docs/DESIGN.md rule 5). Time, not a count, tells it: a
-- slowed or lightly used budget never admits a full window's count, and a 429 at
-- the first request after an idle spell proves no success.
-- A new cooldown also slows the budget down for every worker: its rate scale (the
-- slowdown's, as grown back by now) times `slowdown`, never below 1/16; from the
-- cooldown's end the scale doubles every `slowdown_for` until it is whole again. A
-- limit shared with other tools leaves less than configured; pausing longer and
-- longer would not find the rate that is left, a lower rate does. acquire.lua
-- applies the same formula, and lanes/protocol.py `slow_scale` for `lanes status`
-- (the source "429"): a change to it is made in all three.
-- Quota: the budget is paused until the given moment; no escalation.
-- Every worker is told at once on the pub/sub channel: "name<TAB>pause left (ms)".
--
-- KEYS[1]  the log (sorted set)              KEYS[2]  the state (hash)
-- ARGV[1]  "rate" or "quota"                 ARGV[2]  budget name
-- ARGV[3]  channel                           ARGV[4]  asked pause (ms, -1: none)
-- ARGV[5]  base (ms)                         ARGV[6]  max (ms)
-- ARGV[7]  the refused request's admitted moment (us)
-- ARGV[8]  decay_after: the budget's shortest window (us)
-- ARGV[9]  slowdown (parts per million of the limit; 1000000: none)
-- ARGV[10] slowdown_for: the scale's doubling time (ms)
--
-- Built by lanes/protocol.py `pause_call`.
-- Returns {pause left (ms), level, 1 if this call started a new cooldown else 0}.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local asked = tonumber(ARGV[4])
local base, most = tonumber(ARGV[5]), tonumber(ARGV[6])

local function field(name)
  return tonumber(redis.call('HGET', KEYS[2], name) or '0') or 0
end

local function keep_state(ends)
  local ttl = math.max(86400000, math.ceil((ends - now) / 1000) + 86400000)
  redis.call('PEXPIRE', KEYS[2], ttl)
end

local function tell(ends)
  redis.call('PUBLISH', ARGV[3], ARGV[2] .. '\t' .. math.ceil((ends - now) / 1000))
end

if ARGV[1] == 'quota' then
  local ends = math.max(field('quota_until'), now + asked * 1000)
  redis.call('HSET', KEYS[2], 'quota_until', ends)
  keep_state(ends)
  tell(ends)
  return {math.ceil((ends - now) / 1000), 0, 1}
end

local cool_until = field('cool_until')
local level = field('level')
if tonumber(ARGV[7]) < cool_until then
  -- In flight when the current cooldown began: it is that cooldown's answer and
  -- does not escalate it, but a market that restarts its penalty at every
  -- refusal is waited out: the pause runs again from this answer.
  local again = asked
  if again < 0 then
    again = base * 2 ^ level
  end
  again = math.min(again, most)
  if now + again * 1000 > cool_until then
    cool_until = now + again * 1000
    redis.call('HSET', KEYS[2], 'cool_until', cool_until)
    tell(cool_until)
  end
  return {math.max(0, math.ceil((cool_until - now) / 1000)), level, 0}
end

-- The slowdown's rate scale as grown back by now (1: none), parts per million.
local function slow_scale()
  if field('slow_step') <= 0 then
    return 1000000
  end
  local grown = 2 ^ (math.max(0, now - field('slow_from')) / field('slow_step'))
  return math.min(1000000, field('slow_ppm') * grown)
end

if cool_until > 0 then
  local admitted = tonumber(ARGV[7])
  local served = admitted - cool_until >= tonumber(ARGV[8])
    and redis.call('ZCOUNT', KEYS[1], '(' .. cool_until, '(' .. admitted) > 0
  if served then
    level = 0
  else
    level = level + 1
  end
end
local pause = asked
if pause < 0 then
  pause = base * 2 ^ level
end
pause = math.min(pause, most)
-- No level past the first that reaches the cap: decay then starts from there.
while level > 0 and base * 2 ^ (level - 1) >= most do
  level = level - 1
end
cool_until = math.max(cool_until, now + pause * 1000)
redis.call('HSET', KEYS[2], 'cool_until', cool_until, 'cool_start', now, 'level', level)
local slowdown, slowdown_for = tonumber(ARGV[9]), tonumber(ARGV[10])
if slowdown < 1000000 and slowdown_for > 0 then
  local scale = math.max(62500, math.floor(slow_scale() * slowdown / 1000000))
  redis.call('HSET', KEYS[2], 'slow_ppm', scale, 'slow_from', cool_until,
    'slow_step', slowdown_for * 1000)
end
keep_state(cool_until)
tell(cool_until)
return {math.ceil((cool_until - now) / 1000), level, 1}
