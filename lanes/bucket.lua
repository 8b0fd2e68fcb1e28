-- A market's answer told its bucket's level (Cafe24's X-Api-Call-Limit: used/max):
-- where the market saw more than lanes admitted (another tool of the seller's used
-- the same bucket), raise the budget's GCRA state by the difference, so that every
-- worker waits for it (acquire.lua's BUCKET block explains `tat`).
--
-- The market's `used` is its level rounded up when it answered: an upper bound of
-- its level now (it has only drained since), so raising lanes' level to it is safe.
-- The level lanes knows includes its own calls in flight and reservations ahead,
-- which the market has not seen yet: when lanes is alone it knows at least the
-- market's level (plus under one call of rounding, which is not raised for while a
-- call of its own is on the way), and a bucket it shares with another tool is raised
-- by what that tool used beyond lanes' own calls in flight.

-- KEYS[1]  the bucket (string: tat, us)
-- ARGV[1]  the market's level (calls, already scaled to the configured size)
-- ARGV[2]  the emission interval (us per call)
-- Returns the calls added (x 1000, an integer), 0 when lanes knew as much.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[2])
local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local known = (tat - now) / interval  -- calls
local excess = tonumber(ARGV[1]) - known
if excess <= 0 then
  return 0
end
tat = tat + math.ceil(excess * interval)
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat + 5000000 - now) / 1000))
return math.floor(excess * 1000)
