-- Drop our claim when the market surely did not act, so a redelivery may run the job.
-- KEYS[1] the job's record, KEYS[2] its lease (same {market} hash tag); ARGV[1] our token.
-- Never touches another holder's claim or a done record. Returns 1 if dropped.
local record = redis.call('GET', KEYS[1])
if record == 'claimed:' .. ARGV[1] or record == 'posting:' .. ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
