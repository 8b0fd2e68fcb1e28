-- Mark our claim "posting" before the first request leaves (worker/idempotency.py).
-- KEYS[1] the job's record, KEYS[2] its lease (same {market} hash tag)
-- ARGV[1] our token; ARGV[2] lease length (ms); ARGV[3] record lifetime (s)
-- Returns 1 when the claim is ours and now posting, 0 when it was lost (e.g. Redis restarted).
local record = redis.call('GET', KEYS[1])
if record == 'claimed:' .. ARGV[1] or record == 'posting:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'posting:' .. ARGV[1], 'EX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
