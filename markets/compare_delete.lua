-- Delete a key only while it still holds the value this caller put there (a lock's
-- owner, a token that was refused), so another worker's newer value is never removed.
-- KEYS[1]: the key; ARGV[1]: the value expected. Returns 1 when deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
