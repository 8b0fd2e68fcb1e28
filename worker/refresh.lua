-- Keep our lease alive while the job runs (worker/idempotency.py).
-- KEYS[1] the job's record, KEYS[2] its lease (same {market} hash tag)
-- ARGV[1] our token; ARGV[2] lease length (ms)
-- Returns 1 while the claim is ours, 0 once it is lost.
local record = redis.call('GET', KEYS[1])
if record == 'claimed:' .. ARGV[1] or record == 'posting:' .. ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
