-- Mark a slot's epoch (lanes/epoch.py): "run_id:since", since when this Redis
-- server run holds every write of the slot. Written where missing (a new or
-- emptied Redis) or left by another run (a restart, a failover); kept otherwise:
-- an older epoch of this run proves more. acquire.lua does the same on a
-- budget's first use.
--
-- KEYS[1]  the slot's epoch key (string, no expiry)
--
-- Returns 1 when it was written, 0 when it was kept.

local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local epoch = redis.call('GET', KEYS[1])
if epoch and string.match(epoch, '^(%w+):') == run then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])  -- microseconds
redis.call('SET', KEYS[1], run .. ':' .. string.format('%.0f', now))
return 1
