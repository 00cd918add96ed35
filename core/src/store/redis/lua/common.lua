-- common.lua: helpers shared by every flux script. Not a script on its own: the store
-- assembles common.lua + <algorithm>.lua + single.lua (one limit) or common.lua + all six
-- algorithms + multi.lua (several limits), and loads each assembly with SCRIPT LOAD/EVALSHA.
--
-- Units: every time and duration is an integer number of microseconds (µs) since the Unix
-- epoch. Lua numbers are doubles, exact for integers up to 2^53 (year 2255 in µs); the store
-- refuses quotas whose arithmetic could leave that range.
--
-- Each algorithm registers ALG.<name> = {check = ..., peek = ...}:
--   check(key, now, cost, p1, p2) -> reply, commit
--       reply  = {allowed (1|0), remaining, reset_after_us, retry_after_us}
--       commit = a function writing the new state; called only when the caller decides the
--                hit counts (never for a denied hit: denied hits change no state)
--   peek(key, now, p1, p2) -> reply (what a hit of cost 1 would see; writes nothing)
--   refund(key, now, cost, p1, p2) gives back `cost` units (the arithmetic of the Rust
--       algorithm's `refund`): never above full capacity, nothing written for a key that is
--       idle or missing, and the key deleted when the refund leaves it back at full capacity
--       (as it would have expired then). Replies nothing; the caller peeks.
-- p1, p2 are (E, B) = (emission interval µs, burst) for the bucket algorithms and
-- (T, N) = (period µs, requests) for the window algorithms.

-- Redis < 5 replicates scripts verbatim unless told otherwise, and TIME is non-deterministic.
if redis.replicate_commands then
  redis.replicate_commands()
end

local ALG = {}

-- True when the caller passed an explicit `now` (replay of test vectors, client clocks).
local EXPLICIT = false

-- An integer as a decimal string: tostring would give 1.76e+15.
local function fmt(n)
  return string.format('%d', n)
end

-- floor(a / b) for integers 0 <= a < 2^53, 0 < b, exact (the double quotient may round up
-- to the next integer when b is large; one correction step fixes it).
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local TWO53 = 9007199254740992

-- floor(a * b / d) and the remainder, exact for integers a, b >= 0, d > 0 below 2^53 whose
-- quotient is below 2^53, even when a * b is not (binary long multiplication modulo d).
local function muldiv(a, b, d)
  local p = a * b
  if p < TWO53 then
    local q = idiv(p, d)
    return q, p - q * d
  end
  local qa = idiv(a, d)
  local am = a - qa * d
  local q, r = 0, 0
  local bit = 4503599627370496 -- 2^52
  local rest = b
  while bit >= 1 do
    q = q * 2
    r = r * 2
    if r >= d then
      r = r - d
      q = q + 1
    end
    if rest >= bit then
      rest = rest - bit
      if r >= d - am then
        r = r - (d - am)
        q = q + 1
      else
        r = r + am
      end
    end
    bit = bit / 2
  end
  return qa * b + q, r
end

local function max0(n)
  if n < 0 then
    return 0
  end
  return n
end

-- The time of this call: the explicit argument, or the server's clock.
local function clock(arg)
  if arg ~= nil and arg ~= '' then
    EXPLICIT = true
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- A TTL in ms for PX: µs rounded up (plus one ms of slack against double rounding), never
-- below 1 ms. With an explicit `now` the client's timeline may run far faster than the real
-- one (a replay steps through hours in microseconds), so state is kept at least a minute.
local function ttl_ms(us)
  local ms = math.floor(us / 1000) + 1
  if EXPLICIT and ms < 60000 then
    ms = 60000
  end
  return fmt(ms)
end

-- Raises for a key holding something that is not a `name` state. The message shows (the
-- start of) what it holds but not the key: a key holds a client's identity, and errors end
-- up in logs and on error pages.
local function not_a_state(raw, name)
  error('flux: the key holds ' .. string.format('%q', string.sub(raw, 1, 40)) .. ', not a '
    .. name .. ' state')
end

-- The state string of a key, `count` numbers separated by single spaces; nil for a missing
-- key. Plain find/sub rather than gmatch: this runs for every hit, and a pattern iterator
-- costs more than the few numbers it splits. tonumber gives nil for anything but exactly one
-- number, so a wrong count or a stray word is caught by the check at the end.
local function load_numbers(key, name, count)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local out, from = {}, 1
  for i = 1, count - 1 do
    local space = string.find(raw, ' ', from, true)
    if not space then
      not_a_state(raw, name)
    end
    out[i] = tonumber(string.sub(raw, from, space - 1))
    from = space + 1
  end
  out[count] = tonumber(string.sub(raw, from))
  for i = 1, count do
    if out[i] == nil then
      not_a_state(raw, name)
    end
  end
  return out
end
