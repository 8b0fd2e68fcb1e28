-- A market's answer told its bucket's level (Cafe24's X-Api-Call-Limit: used/max):
-- where the market saw more than lanes admitted (another tool of the seller's used
-- the same bucket), raise the budget's GCRA state by the difference, so that every
-- worker waits for it (acquire.lua's BUCKET block explains `tat`).
--
-- The market's `used` is its level rounded up when it answered, and it saw lanes'
-- calls up to a tolerance later than admitted: alone, lanes finds the market up to
-- one call above its own level (the rounding) on every answer near a full bucket,
-- and raising for that would lower the rate on every answer (8 x 20 callers served
-- 0.65 of the bucket). So only a difference of a whole call or more is another
-- tool's, and then it is raised in full. Lanes' own level counts its calls in
-- flight, which the market has not seen yet. A tool using less than a call between
-- two answers is not seen: a 429 then cools the budget as for any market.

-- KEYS[1]  the bucket (string "tat:raised", us: acquire.lua's BUCKET block; a raise
--          is noted, so that a call given back from before it is not returned too)
-- ARGV[1]  the market's level (calls, already scaled to the configured size)
-- ARGV[2]  the emission interval (us per call)
-- Returns the calls added (x 1000, an integer), 0 when lanes knew as much.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[2])
local held = string.match(redis.call('GET', KEYS[1]) or '0', '^(%d+)')
local tat = math.max(now, tonumber(held) or 0)
local known = (tat - now) / interval  -- calls
local excess = tonumber(ARGV[1]) - known
if excess < 1 then
  return 0
end
tat = tat + math.ceil(excess * interval)
redis.call('SET', KEYS[1], string.format('%.0f:%.0f', tat, now), 'PX', math.ceil((tat + 5000000 - now) / 1000))
return math.floor(excess * 1000)
