-- fixed_window.lua: a counter per window floor(now / T), aligned to the epoch
-- (core/src/algorithms/fixed_window.rs in µs).
--
-- As a script (common.lua + fixed_window.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a string "<window> <count>", the window number
--            and the cost counted in it; missing = nothing counted
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= N (hit and refund)
--   ARGV[4]  T, the period (window length) in µs
--   ARGV[5]  N, the requests allowed per window
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- A hit passes iff count + c <= N. The key expires at the end of its window, which hits
-- never extend. A clock that stepped back stays in the newer window.

-- The current window and its count, and µs until that window ends.
local function fw_current(key, now, T)
  local window = idiv(now, T)
  local state = load_numbers(key, 'fixed_window', 2)
  local count = 0
  if state and state[1] >= window then
    window, count = state[1], state[2]
  end
  return window, count, max0((window + 1) * T - now)
end

ALG.fixed_window = {
  check = function(key, now, cost, T, N)
    local window, count, until_end = fw_current(key, now, T)
    local after = count + cost
    if after <= N then
      return {1, N - after, until_end, 0}, function()
        redis.call('SET', key, fmt(window) .. ' ' .. fmt(after), 'PX', ttl_ms(until_end))
      end
    end
    local reset_after = until_end
    if count == 0 then
      reset_after = 0
    end
    return {0, max0(N - count), reset_after, until_end}, nil
  end,

  peek = function(key, now, T, N)
    local _, count, until_end = fw_current(key, now, T)
    local remaining = max0(N - count)
    local reset_after, allowed, retry_after = until_end, 1, 0
    if count == 0 then
      reset_after = 0
    end
    if remaining == 0 then
      allowed, retry_after = 0, until_end
    end
    return {allowed, remaining, reset_after, retry_after}
  end,

  -- The current window's count down by c, not below 0; an earlier window's state counts for
  -- nothing now and is left alone (fw_current reads it as a count of 0).
  refund = function(key, now, cost, T, N)
    local window, count, until_end = fw_current(key, now, T)
    if count <= 0 then
      return
    end
    local after = max0(count - cost)
    if after == 0 then
      redis.call('DEL', key)
      return
    end
    redis.call('SET', key, fmt(window) .. ' ' .. fmt(after), 'PX', ttl_ms(until_end))
  end,
}
