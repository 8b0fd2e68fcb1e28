-- Move a collection watermark forward, never back (two overlapping runs may finish
-- in any order).
-- KEYS[1]: the watermark key; ARGV[1]: the new moment (Unix milliseconds).
-- Returns the watermark now held (Unix milliseconds).
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > held then
  redis.call('SET', KEYS[1], ARGV[1])
  return wanted
end
return held
