-- Keep our lease alive while the job runs (worker/idempotency.py).
-- KEYS[1] the job's record, KEYS[2] its lease (same {market} hash tag)
-- ARGV[1] our token; ARGV[2] lease length (ms); ARGV[3] our state ("claimed" or
-- "posting"); ARGV[4] record lifetime (s)
-- Returns 1 while the claim is ours, 2 when the record was gone and is put back (Redis lost
-- it: a duplicate delivery must find us holding it, not an unclaimed job), 0 once another
-- holder has it.
local record = redis.call('GET', KEYS[1])
if record == 'claimed:' .. ARGV[1] or record == 'posting:' .. ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
if not record then
  redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[1], 'EX', ARGV[4])
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
