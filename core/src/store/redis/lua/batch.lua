-- batch.lua: the entry point of the batch scripts (appended to common.lua and one algorithm
-- file, for batches of one algorithm, or all six, for mixed batches). Many independent hits in one EVALSHA: each is decided, and counted if it passes,
-- exactly as the one-limit script would decide it, in the order given (a later hit on the same
-- key sees the earlier ones). Unlike multi.lua nothing is all-or-nothing: a denied hit or a
-- failing hit (a key of the wrong type, maxmemory) changes nothing for the others.
--
-- Why one script rather than a pipeline of one-limit scripts: much of an EVALSHA's time in
-- Redis is spent outside the algorithm (command dispatch, setting up KEYS/ARGV, defining the
-- functions of these files), once per call; checking a whole batch in one call took Redis's
-- time per hit from 8-10 µs to 5.5-6.5 µs on the machines flux is benchmarked on.
--
--   KEYS[i]                 hit i's key (on a cluster, every key of one batch is in one slot)
--   ARGV[1]                 now in µs since the epoch, or '' for the server's TIME (read once:
--                           every hit of the batch is decided at the same instant)
--   ARGV[2]                 L, the number of distinct limits in the batch
--   ARGV[3j], ARGV[3j + 1], ARGV[3j + 2]
--                           limit j (1 <= j <= L): its algorithm name ('gcra', ...), p1 (E or
--                           T, µs) and p2 (B or N)
--   ARGV[3L + 1 + 2i], ARGV[3L + 2 + 2i]
--                           hit i's limit j and its cost
-- Each limit is sent once, not once per hit: most batches are many hits of one limit, and
-- every argument costs Redis an allocation to read and Lua a conversion.
-- Reply: for each hit i, either {allowed (1|0), remaining, reset_after_us, retry_after_us}
-- (integers) or a string, the error ('<CODE> <message>') that failed that hit alone (nothing
-- of it was counted).

-- One hit, as single.lua decides it; raises on a bad key or a refused write.
local function batch_hit(key, now, limit, cost)
  local reply, commit = limit.alg.check(key, now, cost, limit.p1, limit.p2)
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
local count = tonumber(ARGV[2])
local limits = {}
for j = 1, count do
  local alg = ALG[ARGV[3 * j]]
  if not alg then
    error('flux: unknown algorithm ' .. tostring(ARGV[3 * j]))
  end
  limits[j] = {alg = alg, p1 = tonumber(ARGV[3 * j + 1]), p2 = tonumber(ARGV[3 * j + 2])}
end
local out = {}
for i = 1, #KEYS do
  local at = 3 * count + 1 + 2 * i
  -- pcall: one bad key must fail its own hit, not the batch. A hit that raised wrote nothing:
  -- every algorithm reads (where a key of the wrong type raises) before it writes, and Redis
  -- refuses writes under maxmemory only while the script has written nothing, so a refused
  -- write is always a hit's first.
  local ok, reply = pcall(batch_hit, KEYS[i], now, limits[tonumber(ARGV[at])],
    tonumber(ARGV[at + 1]))
  if ok then
    out[i] = reply
  else
    out[i] = batch_error(reply)
  end
end
return out
