-- single.lua: the entry point of a one-limit script (appended to common.lua and one algorithm
-- file, after `local THIS = ALG.<algorithm>`).
--
--   KEYS[1]  the limit's key for one identity
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit' (count the hit if it passes), 'peek' (look, write nothing) or 'refund'
--            (give `cost` back, then look)
--   ARGV[3]  cost (hit and refund)
--   ARGV[4]  p1: E (µs) for the bucket algorithms, T (µs) for the window algorithms
--   ARGV[5]  p2: B for the bucket algorithms, N for the window algorithms
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.

local now = clock(ARGV[1])
local p1, p2 = tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[2] == 'peek' then
  return THIS.peek(KEYS[1], now, p1, p2)
end
if ARGV[2] == 'refund' then
  -- One script, so the refund and the look after it are atomic together.
  THIS.refund(KEYS[1], now, tonumber(ARGV[3]), p1, p2)
  return THIS.peek(KEYS[1], now, p1, p2)
end
local reply, commit = THIS.check(KEYS[1], now, tonumber(ARGV[3]), p1, p2)
if reply[1] == 1 then
  commit()
end
return reply
