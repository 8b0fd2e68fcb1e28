-- Read a budget's live state without changing it: the log entries of the
-- last `span` microseconds and the reservations ahead (members carry the
-- lane), and the state hash (cooldown, quota pause, advertised limit).
--
-- KEYS[1]  the log (sorted set)              KEYS[2]  the state (hash)
-- ARGV[1]  span to report (us)
--
-- Returns {now (us), {state field, value, ...}, member_1, score_1 (us), ...}.

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local members = redis.call(
  'ZRANGEBYSCORE', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf', 'WITHSCORES')
local result = {now, redis.call('HGETALL', KEYS[2])}
for i = 1, #members do
  result[#result + 1] = members[i]
end
return result
