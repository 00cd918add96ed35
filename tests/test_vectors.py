"""The shared vectors in tests/vectors/ replayed through Python with a manual clock."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flux import FluxConfig, ManualClock, RateLimiter
from flux.config import FluxSettings, SharedConfig

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.json"))


@pytest.mark.parametrize("storage", ["memory", "shared"])
@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_replays_exactly(path: Path, storage: str, tmp_path: Path) -> None:
    vector = json.loads(path.read_text())
    quota = vector["quota"]
    clock = ManualClock(0)
    config = FluxConfig()
    if storage == "shared":
        config = FluxConfig(
            flux=FluxSettings(storage="shared"), shared=SharedConfig(path=str(tmp_path / "r"))
        )
        if vector["algorithm"] == "sliding_log":
            with pytest.raises(ValueError, match="shared store does not support sliding_log"):
                RateLimiter(1, 1, policy="sliding_log", config=config)
            return
    limiter = RateLimiter(
        quota["requests"],
        quota["period_us"] / 1e6,
        burst=quota.get("burst"),
        policy=vector["algorithm"],
        clock=clock,
        config=config,
    )
    for i, step in enumerate(vector["steps"]):
        clock.set(step["now_us"] / 1e6)
        key = step.get("key", "k")
        op = step.get("op", "hit")
        if op == "reset":
            limiter.reset(key)
            continue
        result = limiter.hit(key, cost=step.get("cost", 1)) if op == "hit" else limiter.peek(key)
        expect = step["expect"]
        got = {
            "allowed": result.allowed,
            "limit": result.limit,
            "remaining": result.remaining,
            # Float seconds carry the exact nanoseconds to well below a microsecond.
            "reset_after_us": math.ceil(round(result.reset_after * 1e6, 3)),
            "retry_after_us": math.ceil(round(result.retry_after * 1e6, 3)),
        }
        assert got == expect, f"{path.name} step {i}: {vector['description']}"


def test_every_algorithm_has_a_vector() -> None:
    from flux._flux import ALGORITHMS

    covered = {json.loads(p.read_text())["algorithm"] for p in VECTORS}
    assert covered == set(ALGORITHMS)
