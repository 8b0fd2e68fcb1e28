-- Claim a side-effect job (worker/idempotency.py). KEYS share the {market} hash tag.
-- KEYS[1] the job's record: "claimed:<token>", "posting:<token>" or "done:<result json>"
-- KEYS[2] the holder's lease (its token), alive while the holder runs
-- ARGV[1] our token; ARGV[2] lease length (ms); ARGV[3] record lifetime (s)
-- ARGV[4] restart quarantine (ms, 0: off): how long after Redis started a missing record
--         is not trusted to mean "never claimed"
-- Returns {"claimed", ""}, {"done", json}, {"busy", ms to wait} or {"resumed", ""}.
local record = redis.call('GET', KEYS[1])
if record and string.sub(record, 1, 5) == 'done:' then
  return {'done', string.sub(record, 6)}
end
local lease = redis.call('PTTL', KEYS[2])
if lease > 0 then
  return {'busy', tostring(lease)}
end
local quarantine = tonumber(ARGV[4])
if not record and quarantine > 0 then
  -- Redis may have restarted empty while a holder was posting this job: a live holder puts
  -- its record back within a refresh period (refresh.lua), so a missing record is believed
  -- only once every live holder has had that chance.
  local info = redis.call('INFO', 'server')
  local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) * 1000
  if uptime < quarantine then
    return {'busy', tostring(quarantine - uptime)}
  end
end
local state = 'claimed'
if record and string.sub(record, 1, 8) == 'posting:' then
  -- The holder is gone after it began to post: the market may have done it. We take the
  -- claim over still "posting", so the job checks what landed before it posts again.
  state = 'posting'
end
redis.call('SET', KEYS[1], state .. ':' .. ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {state == 'posting' and 'resumed' or 'claimed', ''}
