-- Let go of our lease but keep the record "posting" (worker/idempotency.py): a request may
-- have landed, and the next delivery must take over at once (checking first), not after
-- the lease lapses.
-- KEYS[1] the lease; ARGV[1] our token. Returns 1 if dropped.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
