-- Count one attempt of a message (worker/tracking.py `Attempts.spend`), in one command.
-- KEYS[1] the message's attempt counter; ARGV[1] its lifetime (s), renewed at each attempt.
-- Returns the attempts spent, this one included.
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
