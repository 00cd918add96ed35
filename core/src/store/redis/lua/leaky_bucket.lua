-- leaky_bucket.lua: leaky bucket as a meter (core/src/algorithms/leaky_bucket.rs in µs). The
-- level is counted in µs of leak: one hit = E µs, a full bucket = B*E.
--
-- As a script (common.lua + leaky_bucket.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a string "<level> <last>", the level in µs of
--            leak as of <last> (µs since the epoch); missing = an empty bucket
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= B (hit and refund)
--   ARGV[4]  E, µs to leak one hit (ceil(T / N))
--   ARGV[5]  B, the capacity in hits
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- A hit pours c*E in and passes iff the level stays within B*E. The key expires when the
-- bucket has leaked empty.

-- The level at `now` after leaking since `last`, and `last`.
local function lb_level(key, now)
  local state = load_numbers(key, 'leaky_bucket', 2)
  if not state then
    return 0, 0
  end
  local level, last = state[1], state[2]
  return max0(level - max0(now - last)), last
end

ALG.leaky_bucket = {
  check = function(key, now, cost, E, B)
    local capacity = B * E
    local level, last = lb_level(key, now)
    local poured = level + cost * E
    if poured <= capacity then
      local new_last = math.max(now, last)
      return {1, idiv(capacity - poured, E), poured, 0}, function()
        redis.call('SET', key, fmt(poured) .. ' ' .. fmt(new_last), 'PX',
          ttl_ms(new_last + poured - now))
      end
    end
    return {0, idiv(max0(capacity - level), E), level, poured - capacity}, nil
  end,

  peek = function(key, now, E, B)
    local level = lb_level(key, now)
    local room = max0(B * E - level)
    local allowed = 0
    if room >= E then
      allowed = 1
    end
    return {allowed, idiv(room, E), level, max0(E - room)}
  end,

  -- The level down by c*E, not below empty (lower would be credit beyond the capacity).
  refund = function(key, now, cost, E, B)
    local level, last = lb_level(key, now)
    if level <= 0 then
      return
    end
    local lowered = max0(level - cost * E)
    if lowered == 0 then
      redis.call('DEL', key)
      return
    end
    local new_last = math.max(now, last)
    redis.call('SET', key, fmt(lowered) .. ' ' .. fmt(new_last), 'PX',
      ttl_ms(new_last + lowered - now))
  end,
}
