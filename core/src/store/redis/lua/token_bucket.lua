-- token_bucket.lua: token bucket with continuous refill (core/src/algorithms/token_bucket.rs
-- in µs). Tokens are counted in µs of refill: one token = E µs, a full bucket = B*E.
--
-- As a script (common.lua + token_bucket.lua + single.lua):
--   KEYS[1]  the limit's key for one identity: a string "<taken> <last>", µs of refill missing
--            from a full bucket as of <last> (µs since the epoch); missing = a full bucket
--   ARGV[1]  now in µs since the epoch, or '' for the server's TIME
--   ARGV[2]  'hit', 'peek' or 'refund'
--   ARGV[3]  cost c, 1 <= c <= B (hit and refund)
--   ARGV[4]  E, µs to refill one token (ceil(T / N))
--   ARGV[5]  B, the capacity in tokens
-- Reply: {allowed (1|0), remaining, reset_after_us, retry_after_us}, integers.
--
-- The key expires when the bucket is full again.

-- Tokens in the bucket at `now` (µs of refill), and the state's `last`.
local function tb_tokens(key, now, capacity)
  local state = load_numbers(key, 'token_bucket', 2)
  if not state then
    return capacity, 0
  end
  local taken, last = state[1], state[2]
  local refilled = max0(now - last)
  return max0(capacity - max0(taken - refilled)), last
end

ALG.token_bucket = {
  check = function(key, now, cost, E, B)
    local capacity = B * E
    local tokens, last = tb_tokens(key, now, capacity)
    local needed = cost * E
    if needed <= tokens then
      local left = tokens - needed
      local taken = capacity - left
      local new_last = math.max(now, last)
      return {1, idiv(left, E), taken, 0}, function()
        redis.call('SET', key, fmt(taken) .. ' ' .. fmt(new_last), 'PX',
          ttl_ms(new_last + taken - now))
      end
    end
    return {0, idiv(tokens, E), capacity - tokens, needed - tokens}, nil
  end,

  peek = function(key, now, E, B)
    local capacity = B * E
    local tokens = tb_tokens(key, now, capacity)
    local allowed = 0
    if tokens >= E then
      allowed = 1
    end
    return {allowed, idiv(tokens, E), capacity - tokens, max0(E - tokens)}
  end,

  -- c tokens back, up to the capacity (more would be a burst beyond B).
  refund = function(key, now, cost, E, B)
    local capacity = B * E
    local tokens, last = tb_tokens(key, now, capacity)
    if tokens >= capacity then
      return
    end
    local taken = capacity - math.min(tokens + cost * E, capacity)
    if taken == 0 then
      redis.call('DEL', key)
      return
    end
    local new_last = math.max(now, last)
    redis.call('SET', key, fmt(taken) .. ' ' .. fmt(new_last), 'PX',
      ttl_ms(new_last + taken - now))
  end,
}
