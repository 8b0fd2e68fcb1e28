-- Let go of our lease but keep the record (worker/idempotency.py): the job's outcome is
-- unknown, and the next delivery must see that at once, not after the lease lapses.
-- KEYS[1] the lease; ARGV[1] our token. Returns 1 if dropped.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
