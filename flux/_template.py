"""The commented flux.toml that ``python -m flux init`` writes.

Kept apart from the CLI so tests can check it against flux.config: it must load without error,
mention every key, and stay loadable when its commented examples are uncommented.
"""

from __future__ import annotations

__all__ = ["TEMPLATE"]

TEMPLATE = """\
# flux.toml — configuration of the flux rate limiter.
# Written by `python -m flux init`; check it with `python -m flux check`.
#
# flux looks for its configuration in this order: the path given to load_config(),
# $FLUX_CONFIG, ./flux.toml, ./config/flux.toml. With no file it uses the defaults shown here.
# Every value below is the default; delete what you do not change. Lines starting with `#`
# are examples you may uncomment. Unknown keys and bad values are errors, never ignored.

# -----------------------------------------------------------------------------
# Redis: share limits between processes, hosts and languages.
# Without a [redis] section (or $FLUX_REDIS_URL) limits live in this process's memory.
# Uncomment the section header to use Redis.
# -----------------------------------------------------------------------------
# [redis]
# host = "127.0.0.1"
# port = 6379
# pool_size = 5                 # connections in the pool
# timeout_ms = 200              # connect and command timeout, milliseconds
# password = "change-me"
# db = 0
# cluster = false               # true, or seed nodes: ["10.0.0.1:7000", "10.0.0.2:7000"]
#
# Instead of host/port/password/db (not together with them), one URL; $FLUX_REDIS_URL wins:
#   url = "redis://:password@127.0.0.1:6379/0"     (also rediss:// and unix:///path.sock)

# -----------------------------------------------------------------------------
# Core behaviour
# -----------------------------------------------------------------------------
[flux]
key_prefix = "flux:"            # prefix of every key flux stores
fail_silently = true            # Redis down: true lets requests through, false raises
console_logging = false         # log to stderr
# log_file = "flux.log"         # also log to this file (default: none)
# storage = "memory"            # "memory", "redis" or "shared" (default: "redis" when
                                # [redis] or $FLUX_REDIS_URL is set, else "memory");
                                # $FLUX_STORAGE overrides it

# Random extra delay in Retry-After, so blocked clients do not all come back at once.
jitter_enabled = false
jitter_max_ms = 500

# Proxies whose X-Forwarded-For / Forwarded headers are believed. Empty: the socket peer
# address is the client, and a forged header buys nothing.
trusted_proxies = []            # e.g. ["10.0.0.0/8", "127.0.0.1", "::1"]

hash_keys = false               # store a digest of client identities (no IPs in Redis)
# max_keys = 1000000            # memory store: most keys kept (default: no bound)
headers_on_success = true       # X-RateLimit-* / RateLimit headers on allowed responses too
# ipv6_prefix = 64              # one bucket per IPv6 /64 (default: per address)
forwarded_header = "X-Forwarded-For"  # or "Forwarded" (RFC 7239), read from trusted proxies
# exempt_ips = []               # networks never limited: 10.0.0.0/8, ::1 (after trusted_proxies)

# -----------------------------------------------------------------------------
# Analytics: decision events and the metrics server (/metrics on 127.0.0.1:port)
# -----------------------------------------------------------------------------
[analytics]
enabled = false
port = 4444
stream = "flux:events"          # Redis stream of events
retention = 100000              # most events kept in the stream
sample_rate = 1.0               # share of decisions recorded, 0.0 to 1.0

# -----------------------------------------------------------------------------
# Default limit: used by @rate_limit and RateLimiter() when nothing else is given.
#
# Policies:
#   "gcra"            smooth, exact, one timestamp per key (recommended)
#   "token_bucket"    bursts up to `burst`, refilled continuously
#   "leaky_bucket"    a meter draining at requests/period
#   "fixed_window"    counter reset every `period` (can pass 2x at a window edge)
#   "sliding_window"  weighted two-window counter
#   "sliding_log"     exact log of every hit (memory grows with `requests`)
# -----------------------------------------------------------------------------
[rate_limit]
policy = "gcra"
requests = 100                  # requests allowed ...
period = 60                     # ... per this many seconds (may be a fraction: 0.5)
# burst = 100                   # hits allowed at once (default: requests)
# fail_silently = false         # Redis down: this limit's own policy (default: [flux]'s)
# limit = "10/second; 1000/day" # instead of requests/period: rate strings, checked together

# -----------------------------------------------------------------------------
# Named limits: @rate_limit("strict"), RateLimiter.from_config("strict").
# A named limit takes what it omits from [rate_limit]; its burst defaults to its requests.
# -----------------------------------------------------------------------------
[rate_limits.default]
requests = 100
period = 60
policy = "gcra"

[rate_limits.strict]
limit = "5/minute"              # a rate string, instead of requests and period
policy = "token_bucket"

[rate_limits.high_throughput]
requests = 10000
period = 60
policy = "gcra"
"""
