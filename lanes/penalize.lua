-- Cool a whole budget down: every worker's acquire is refused until it ends.
-- A longer cooldown already running is kept; a shorter one is extended.
--
-- KEYS[1]  the cooldown (string, PX)
-- ARGV[1]  cooldown length (ms)
--
-- Returns the cooldown left (ms).

local wanted = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left >= wanted then
  return left
end
redis.call('SET', KEYS[1], '1', 'PX', wanted)
return wanted
