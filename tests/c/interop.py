"""The Python half of the C/Python interop check (run by tests/c/run.sh).

Hits the limit `interop` (100 per hour, gcra) on Redis `hits` times with key KEY under key
prefix KEY_PREFIX, and prints how many passed. Usage: interop.py URL KEY_PREFIX KEY HITS
"""

from __future__ import annotations

import sys

from flux import FluxConfig, RateLimiter
from flux.config import FluxSettings, LimitConfig, RedisConfig


def main(url: str, key_prefix: str, key: str, hits: str) -> None:
    config = FluxConfig(
        redis=RedisConfig(url=url),
        flux=FluxSettings(fail_silently=False, key_prefix=key_prefix),
        rate_limits={"interop": LimitConfig(requests=100, period=3600)},
        storage="redis",
    )
    limiter = RateLimiter.from_config("interop", config=config)
    print(sum(limiter.hit(key).allowed for _ in range(int(hits))))


if __name__ == "__main__":
    main(*sys.argv[1:])
