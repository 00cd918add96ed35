"""The shared vectors of tests/vectors/ (hits, peeks, resets) and tests/vectors/refund/
(with refunds), format in tests/vectors/README.md, and the one Python replay of both, for every
store's tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from flux import FluxConfig, ManualClock, RateLimiter, RateLimitResult

HERE = Path(__file__).parents[1] / "vectors"
VECTORS = sorted(HERE.glob("*.json"))
REFUND_VECTORS = sorted((HERE / "refund").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    """One vector."""
    return dict(json.loads(path.read_text()))


def limiter_for(vector: dict[str, Any], clock: ManualClock, config: FluxConfig) -> RateLimiter:
    """The limiter ``vector`` describes, on ``clock``, in ``config``'s store."""
    quota = vector["quota"]
    return RateLimiter(
        quota["requests"],
        quota["period_us"] / 1e6,
        burst=quota.get("burst"),
        policy=vector["algorithm"],
        clock=clock,
        config=config,
    )


def as_vector_result(result: RateLimitResult) -> dict[str, Any]:
    """A result in the vectors' terms (whole µs, rounded up)."""
    return {
        "allowed": result.allowed,
        "limit": result.limit,
        "remaining": result.remaining,
        # Float seconds carry the exact nanoseconds to well below a microsecond.
        "reset_after_us": math.ceil(round(result.reset_after * 1e6, 3)),
        "retry_after_us": math.ceil(round(result.retry_after * 1e6, 3)),
    }


def replay(path: Path, vector: dict[str, Any], limiter: RateLimiter, clock: ManualClock) -> None:
    """Replays ``vector`` through ``limiter`` (built on ``clock``), asserting every decision
    and every ``empty`` (the limiter's store holds no key)."""
    for i, step in enumerate(vector["steps"]):
        where = f"{path.name} step {i}: {vector['description']}"
        clock.set(step["now_us"] / 1e6)
        key = step.get("key", "k")
        op = step.get("op", "hit")
        cost = step.get("cost", 1)
        result: RateLimitResult | None
        if op == "reset":
            limiter.reset(key)
            result = None
        elif op == "refund":
            result = limiter.refund(key, cost)
        elif op == "hit":
            result = limiter.hit(key, cost=cost)
        else:
            result = limiter.peek(key)
        if result is not None:
            assert as_vector_result(result) == step["expect"], where
        if "empty" in step:
            assert (len(limiter) == 0) == step["empty"], f"{where}: store empty?"
