-- gcra.lua: GCRA, one timestamp per key (the arithmetic of core/src/algorithms/gcra.rs in µs).
--
-- As a script (common.lua + gcra.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a string holding TAT, the theoretical arrival
--            time in µs since the epoch (missing = a fresh key)
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= B (hit and refund)
--   ARGV[4]  E, the emission interval in µs (ceil(T / N))
--   ARGV[5]  B, the burst (capacity)
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- new_tat = max(TAT, now) + c*E; the hit passes iff new_tat - now <= B*E. The key expires when
-- TAT is reached, i.e. when the key is back to full capacity.

local function gcra_tat(key)
  local state = load_numbers(key, 'gcra', 1)
  if state then
    return state[1]
  end
  return 0
end

ALG.gcra = {
  check = function(key, now, cost, E, B)
    local tau = B * E
    local start = math.max(gcra_tat(key), now)
    local new_tat = start + cost * E
    local ahead = new_tat - now
    if ahead <= tau then
      return {1, idiv(tau - ahead, E), ahead, 0}, function()
        redis.call('SET', key, fmt(new_tat), 'PX', ttl_ms(ahead))
      end
    end
    return {0, idiv(max0(tau - (start - now)), E), start - now, ahead - tau}, nil
  end,

  peek = function(key, now, E, B)
    local ahead = math.max(gcra_tat(key), now) - now
    local room = max0(B * E - ahead)
    local allowed = 0
    if room >= E then
      allowed = 1
    end
    return {allowed, idiv(room, E), ahead, max0(E - room)}
  end,

  -- TAT back by c*E, not below now (further back would be credit beyond the burst).
  refund = function(key, now, cost, E, B)
    local tat = gcra_tat(key)
    if tat <= now then
      return
    end
    local new_tat = math.max(tat - cost * E, now)
    if new_tat <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, fmt(new_tat), 'PX', ttl_ms(new_tat - now))
    end
  end,
}
