-- multi.lua: the entry point of the several-limits script (appended to common.lua and all six
-- algorithm files). All limits are checked first; the hit counts against every limit if every
-- limit lets it pass, and against none otherwise (atomic: a script runs alone).
--
--   KEYS[i]           the key of limit i for its identity (all in one hash slot on a cluster)
--   ARGV[1]           now in µs since the epoch, or '' for the server's TIME
--   ARGV[4i - 2]      limit i's algorithm name ('gcra', 'token_bucket', ...)
--   ARGV[4i - 1]      limit i's cost
--   ARGV[4i]          limit i's p1 (E or T, µs)
--   ARGV[4i + 1]      limit i's p2 (B or N)
-- Reply: {all_allowed (1|0), then for each limit i: allowed_i, remaining_i, reset_after_us_i,
-- retry_after_us_i}, integers. When the hit is denied, a limit that would have let it pass
-- reports allowed 1, retry_after 0 and its uncounted state as a peek sees it.

local now = clock(ARGV[1])
local n = #KEYS
local replies, commits, algs, params = {}, {}, {}, {}
local all = 1
for i = 1, n do
  local base = 4 * i - 2
  local alg = ALG[ARGV[base]]
  if not alg then
    error('flux: unknown algorithm ' .. tostring(ARGV[base]))
  end
  local p1, p2 = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  algs[i], params[i] = alg, {p1, p2}
  replies[i], commits[i] = alg.check(KEYS[i], now, tonumber(ARGV[base + 1]), p1, p2)
  if replies[i][1] == 0 then
    all = 0
  end
end
local out = {all}
for i = 1, n do
  local reply = replies[i]
  if all == 1 then
    commits[i]()
  elseif reply[1] == 1 then
    local seen = algs[i].peek(KEYS[i], now, params[i][1], params[i][2])
    reply = {1, seen[2], seen[3], 0}
  end
  for j = 1, 4 do
    out[#out + 1] = reply[j]
  end
end
return out
