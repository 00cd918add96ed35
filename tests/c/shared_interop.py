"""The Python half of the C/Python shared-memory interop check (run by tests/c/run.sh).

Hits the limit `interop` (100 per hour, gcra) of the region at PATH `hits` times with key KEY,
and prints how many passed. Its prefix is "flux:interop:" ([flux] key_prefix, then the limit's
name). Usage: shared_interop.py PATH KEY HITS
"""

from __future__ import annotations

import sys

from flux import FluxConfig, RateLimiter
from flux.config import FluxSettings, LimitConfig, SharedConfig


def main(path: str, key: str, hits: str) -> None:
    config = FluxConfig(
        flux=FluxSettings(storage="shared"),
        shared=SharedConfig(path=path),
        rate_limits={"interop": LimitConfig(requests=100, period=3600)},
    )
    limiter = RateLimiter.from_config("interop", config=config)
    print(sum(limiter.hit(key).allowed for _ in range(int(hits))))


if __name__ == "__main__":
    main(*sys.argv[1:])
