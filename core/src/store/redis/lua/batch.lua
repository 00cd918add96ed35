-- batch.lua: the entry point of the batch script (appended to common.lua and all six algorithm
-- files). Many independent hits in one EVALSHA: each is decided, and counted if it passes,
-- exactly as the one-limit script would decide it, in the order given (a later hit on the same
-- key sees the earlier ones). Unlike multi.lua nothing is all-or-nothing: a denied hit or a
-- failing hit (a key of the wrong type, maxmemory) changes nothing for the others.
--
-- Why one script rather than a pipeline of one-limit scripts: Redis spends most of an EVALSHA's
-- time outside the algorithm (command dispatch, setting up KEYS/ARGV, defining this file's
-- functions), so checking a whole batch in one call roughly halves its time per hit.
--
--   KEYS[i]           hit i's key (on a cluster, every key of one batch is in one hash slot)
--   ARGV[1]           now in µs since the epoch, or '' for the server's TIME (read once: every
--                     hit of the batch is decided at the same instant)
--   ARGV[4i - 2]      hit i's algorithm name ('gcra', 'token_bucket', ...)
--   ARGV[4i - 1]      hit i's cost
--   ARGV[4i]          hit i's p1 (E or T, µs)
--   ARGV[4i + 1]      hit i's p2 (B or N)
-- Reply: for each hit i, either {allowed (1|0), remaining, reset_after_us, retry_after_us}
-- (integers) or a string, the error ('<CODE> <message>') that failed that hit alone (nothing
-- of it was counted).

-- One hit, as single.lua decides it; raises on a bad key or a refused write.
local function batch_hit(key, now, name, cost, p1, p2)
  local alg = ALG[name]
  if not alg then
    error('flux: unknown algorithm ' .. name)
  end
  local reply, commit = alg.check(key, now, tonumber(cost), tonumber(p1), tonumber(p2))
  if reply[1] == 1 then
    commit()
  end
  return reply
end

-- The error of a hit that raised, as a string: a failed redis.call raises Redis's own error
-- ('WRONGTYPE ...', 'OOM ...': a string, or a table with `err` in newer Redis), kept with its
-- code; a script error (error('flux: ...'), prefixed with its position) gets the ERR code an
-- uncaught error would have had. A string, not an error reply ({err = ...}): clients turn an
-- error nested in a reply into an error of the whole reply (redis-rs does, on a cluster).
local function batch_error(raised)
  if type(raised) == 'table' and raised.err then
    return raised.err
  end
  if type(raised) ~= 'string' then
    return 'ERR flux: a hit of the batch failed'
  end
  if string.find(raised, '^%u[%u_]+ ') then
    return raised
  end
  return 'ERR ' .. raised
end

local now = clock(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local base = 4 * i - 2
  -- pcall: one bad key must fail its own hit, not the batch. A hit that raised wrote nothing:
  -- every algorithm reads (where a key of the wrong type raises) before it writes, and Redis
  -- refuses writes under maxmemory only while the script has written nothing, so a refused
  -- write is always a hit's first.
  local ok, reply = pcall(batch_hit, KEYS[i], now, ARGV[base], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3])
  if ok then
    out[i] = reply
  else
    out[i] = batch_error(reply)
  end
end
return out
