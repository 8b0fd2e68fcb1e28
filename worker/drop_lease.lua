-- Let go of our lease but keep the record "posting" (worker/idempotency.py): a request may
-- have landed, and the next delivery takes over (checking first) at once, or once a request
-- left without answer can no longer be acted on (ARGV[2] ms: the lease is kept that long).
-- A record Redis lost (a restart) is put back "posting" first, so the next delivery still
-- checks before it posts.
-- KEYS[1] the job's record, KEYS[2] the lease (same {market} hash tag)
-- ARGV[1] our token, ARGV[2] milliseconds to keep the lease (0: drop it now),
-- ARGV[3] record lifetime (s). Returns 1 if ours.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], 'posting:' .. ARGV[1], 'EX', ARGV[3])
  if tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  end
  return 1
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  return redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return redis.call('DEL', KEYS[2])
