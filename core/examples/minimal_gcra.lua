-- minimal_gcra.lua: GCRA in a dozen lines, no cost, no peek, no explicit time. The floor a
-- Redis-backed hit is measured against (core/examples/bare_evalsha.rs, core/benches/redis.rs,
-- benches/python/bench_redis.py).
--   KEYS[1]  the key (TAT, microseconds)  ARGV[1] E, the emission interval  ARGV[2] tau = B*E
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[1])
if new_tat - now <= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
  return {1, new_tat - now}
end
return {0, new_tat - now}
