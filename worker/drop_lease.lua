-- Let go of our lease but keep the record "posting" (worker/idempotency.py): a request may
-- have landed, and the next delivery takes over (checking first) at once, or once a request
-- left without answer can no longer be acted on (ARGV[2] ms: the lease is kept that long).
-- KEYS[1] the lease; ARGV[1] our token, ARGV[2] milliseconds to keep it (0: drop it now).
-- Returns 1 if ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('DEL', KEYS[1])
