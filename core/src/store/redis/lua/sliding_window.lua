-- sliding_window.lua: weighted two-window counter, Cloudflare style
-- (core/src/algorithms/sliding_window.rs in µs).
--
-- As a script (common.lua + sliding_window.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a string "<window> <previous> <current>", the
--            current window number floor(t / T) and the cost counted in the window before it
--            and in it; missing = nothing counted
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= N (hit and refund)
--   ARGV[4]  T, the period (window length) in µs
--   ARGV[5]  N, the requests allowed per sliding period
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- With el = now - start of the current window, the estimate is prev*(T - el)/T + curr and a
-- hit passes iff estimate + c <= N. Exactly, with integers only: let
-- w = ceil(prev*(T - el)/T); then the hit passes iff w <= N - curr - c, and
-- remaining = N - curr - w. muldiv keeps prev*(T - el) exact beyond 2^53. The key expires
-- when both windows have rolled out (the end of the window after the current one).

-- The state rolled forward to `now`: window, previous, current, elapsed.
local function sw_view(key, now, T)
  local window = idiv(now, T)
  local state = load_numbers(key, 'sliding_window', 3)
  if not state then
    return window, 0, 0, now - window * T
  end
  local sw, sp, sc = state[1], state[2], state[3]
  local diff = window - sw
  if diff < 0 then
    -- The clock stepped back into an older window: stay at the start of the newer one.
    return sw, sp, sc, 0
  elseif diff == 0 then
    return window, sp, sc, now - window * T
  elseif diff == 1 then
    return window, sc, 0, now - window * T
  end
  return window, 0, 0, now - window * T
end

-- ceil(previous * (T - el) / T): the previous window's weighted count, rounded up.
local function sw_weighted(previous, el, T)
  local q, r = muldiv(previous, T - el, T)
  if r > 0 then
    q = q + 1
  end
  return q
end

-- µs until a hit of `cost` passes, for a hit that does not pass now.
local function sw_retry_after(previous, current, el, cost, T, N)
  -- Smallest elapsed time e in a window with `older` weighted and `newer` counted such that
  -- older*(T - e) + (newer + cost)*T <= N*T; nil when no e in that window will do.
  local function earliest(older, newer)
    local room = N - newer - cost
    if room < 0 then
      return nil
    end
    if room >= older then
      return 0
    end
    return T - muldiv(room, T, older)
  end
  local e = earliest(previous, current)
  if e then
    return max0(e - el)
  end
  -- Not in this window: in the next one, this window's count becomes the weighted one.
  return (T - el) + earliest(current, 0)
end

local function sw_reset_after(previous, current, el, T)
  if current > 0 then
    return 2 * T - el
  elseif previous > 0 then
    return T - el
  end
  return 0
end

ALG.sliding_window = {
  check = function(key, now, cost, T, N)
    local window, previous, current, el = sw_view(key, now, T)
    local weighted = sw_weighted(previous, el, T)
    if weighted <= N - current - cost then
      local after = current + cost
      return {1, N - after - weighted, sw_reset_after(previous, after, el, T), 0}, function()
        redis.call('SET', key, fmt(window) .. ' ' .. fmt(previous) .. ' ' .. fmt(after),
          'PX', ttl_ms((window + 2) * T - now))
      end
    end
    return {0, max0(N - current - weighted), sw_reset_after(previous, current, el, T),
      sw_retry_after(previous, current, el, cost, T, N)}, nil
  end,

  peek = function(key, now, T, N)
    local _, previous, current, el = sw_view(key, now, T)
    local remaining = max0(N - current - sw_weighted(previous, el, T))
    local allowed, retry_after = 1, 0
    if remaining == 0 then
      allowed, retry_after = 0, sw_retry_after(previous, current, el, 1, T, N)
    end
    return {allowed, remaining, sw_reset_after(previous, current, el, T), retry_after}
  end,

  -- c off the current window's count, the rest off the previous one's (where a hit taken
  -- just before the window rolled over now counts, weighted), neither below 0.
  refund = function(key, now, cost, T, N)
    local window, previous, current = sw_view(key, now, T)
    if previous == 0 and current == 0 then
      return
    end
    local from_current = math.min(cost, current)
    previous = previous - math.min(cost - from_current, previous)
    current = current - from_current
    if previous == 0 and current == 0 then
      redis.call('DEL', key)
      return
    end
    redis.call('SET', key, fmt(window) .. ' ' .. fmt(previous) .. ' ' .. fmt(current),
      'PX', ttl_ms((window + 2) * T - now))
  end,
}
