-- sliding_log.lua: exact log of the hits of the last T in a sorted set
-- (core/src/algorithms/sliding_log.rs in µs).
--
-- As a script (common.lua + sliding_log.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a sorted set with one member per unit of cost,
--            scored by the hit's time in µs since the epoch; members are "<time>:<n>", unique
--            (n counts up from the set's size; a taken name is skipped)
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= N (hit and refund)
--   ARGV[4]  T, the period in µs
--   ARGV[5]  N, the requests allowed in any period
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- A hit at `now` passes iff the cost logged in (now - T, now] plus c stays within N. Entries
-- at or before now - T are dropped when a hit is counted (a denied hit writes nothing). The
-- key expires T after its newest entry.

-- Cost logged in (now - T, +inf).
local function sl_live(key, now, T)
  return redis.call('ZCOUNT', key, '(' .. fmt(now - T), '+inf')
end

-- The newest entry's time, or nil for an empty log.
local function sl_newest(key)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] then
    return tonumber(newest[2])
  end
  return nil
end

local function sl_reset_after(key, now, T)
  local newest = sl_newest(key)
  if newest then
    return max0(newest + T - now)
  end
  return 0
end

-- µs until `needed` units of live cost have expired: the needed-th live entry leaves at its
-- time + T.
local function sl_retry_after(key, now, T, needed)
  local entry = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(now - T), '+inf', 'WITHSCORES',
    'LIMIT', needed - 1, 1)
  return max0(tonumber(entry[2]) + T - now)
end

ALG.sliding_log = {
  check = function(key, now, cost, T, N)
    local live = sl_live(key, now, T)
    if live + cost <= N then
      return {1, N - live - cost, T, 0}, function()
        local newest = sl_newest(key) or now
        -- ZADD first: under maxmemory Redis refuses a script's first memory-growing write, and
        -- only the first (a script never stops half-way through its writes).
        local at = fmt(now)
        local n = redis.call('ZCARD', key)
        local added = 0
        while added < cost do
          -- Batches of at most 1000 members keep unpack within Lua's stack.
          local batch = {}
          local want = math.min(cost - added, 1000)
          for i = 1, want do
            batch[#batch + 1] = at
            batch[#batch + 1] = at .. ':' .. fmt(n + i)
          end
          n = n + want
          added = added + redis.call('ZADD', key, 'NX', unpack(batch))
        end
        redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - T))
        redis.call('PEXPIRE', key, ttl_ms(math.max(newest, now) + T - now))
      end
    end
    return {0, max0(N - live), sl_reset_after(key, now, T),
      sl_retry_after(key, now, T, live + cost - N)}, nil
  end,

  peek = function(key, now, T, N)
    local live = sl_live(key, now, T)
    local remaining = max0(N - live)
    local allowed, retry_after = 1, 0
    if remaining == 0 then
      allowed, retry_after = 0, sl_retry_after(key, now, T, live - N + 1)
    end
    return {allowed, remaining, sl_reset_after(key, now, T), retry_after}
  end,

  -- The c newest live members removed (the hit just taken), expired ones dropped on the way.
  -- Redis deletes a sorted set left empty.
  refund = function(key, now, cost, T, N)
    local live = sl_live(key, now, T)
    if live == 0 then
      return
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - T))
    redis.call('ZREMRANGEBYRANK', key, fmt(-math.min(cost, live)), '-1')
    local newest = sl_newest(key)
    if newest then
      redis.call('PEXPIRE', key, ttl_ms(newest + T - now))
    end
  end,
}
