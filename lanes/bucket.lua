-- A market's answer told its bucket's level (Cafe24's X-Api-Call-Limit: used/max):
-- where the market saw more than lanes admitted (another tool of the seller's used
-- the same bucket), raise the budget's GCRA state by the difference, so that every
-- worker waits for it (acquire.lua's BUCKET block explains `tat`).
--
-- The market rounds its level up (a level of 37.1 is told as 38) and saw our calls
-- later than they were admitted: only a difference past one whole call is another
-- tool's, or every answer near a full bucket would lower the rate a little. The
-- level lanes knows includes its own reservations ahead, which the market has not
-- seen yet: the correction errs only towards admitting as before, never less.
--
-- KEYS[1]  the bucket (string: tat, us)
-- ARGV[1]  the market's level (calls, already scaled to the configured size)
-- ARGV[2]  the emission interval (us per call)
-- Returns the calls added (x 1000, an integer), 0 when lanes knew as much.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[2])
local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local known = (tat - now) / interval  -- calls
local excess = tonumber(ARGV[1]) - 1 - known
if excess <= 0 then
  return 0
end
tat = tat + math.ceil(excess * interval)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat + 5000000 - now) / 1000))
return math.floor(excess * 1000)
