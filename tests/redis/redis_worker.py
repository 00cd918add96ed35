"""A separate process for the multi-process Redis tests, driven by JSON lines on stdin.

``python redis_worker.py URL`` prints ``{"ready": <its time.time()>}`` once flux is imported,
then answers each request line with one JSON line:

- ``{"op": "burst", "policies": [...], "requests": N, "period": T, "hits": H, "key": K}``:
  H hits on K under each policy (interleaved); replies the number allowed per policy.
- ``{"op": "hit", "requests": N, "period": T, "burst": B, "key": K, "client_clock": bool}``:
  one hit; replies the decision, this process's ``time.time()`` and flux's Rust clock. With
  ``client_clock`` the hit carries this process's own clock as its time (what a store trusting
  client clocks would do) instead of Redis's ``TIME``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from flux import FluxConfig, ManualClock, RateLimiter
from flux.config import RedisConfig


def main(url: str) -> None:
    config = FluxConfig(redis=RedisConfig(url=url), storage="redis")
    limiters: dict[tuple[Any, ...], RateLimiter] = {}

    def limiter(
        requests: int, period: float, policy: str = "gcra", burst: int | None = None
    ) -> RateLimiter:
        key = (requests, period, policy, burst)
        if key not in limiters:
            limiters[key] = RateLimiter(requests, period, burst=burst, policy=policy, config=config)
        return limiters[key]

    print(json.dumps({"ready": time.time()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "burst":
            lims = [limiter(request["requests"], request["period"], p) for p in request["policies"]]
            allowed = dict.fromkeys(request["policies"], 0)
            for _ in range(request["hits"]):
                for policy, lim in zip(request["policies"], lims):
                    allowed[policy] += lim.hit(request["key"]).allowed
            reply: dict[str, Any] = {"allowed": allowed}
        elif request["op"] == "hit":
            lim = limiter(request["requests"], request["period"], burst=request.get("burst"))
            if request.get("client_clock"):
                clocked = RateLimiter(
                    lim.requests,
                    lim.period,
                    burst=lim.burst,
                    config=config,
                    clock=ManualClock(time.time()),
                )
                result = clocked.hit(request["key"])
            else:
                result = lim.hit(request["key"])
            reply = {
                "allowed": result.allowed,
                "remaining": result.remaining,
                "retry_after": result.retry_after,
                "reset_after": result.reset_after,
                "source": result.source,
                "time": time.time(),
                # flux's Rust clock (a ManualClock starts at the core's system time).
                "rust_time": ManualClock().now(),
            }
        else:
            reply = {"error": f"unknown op {request['op']!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
