"""The shared vectors in tests/vectors/ replayed through Python with a manual clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vectors import VECTORS, limiter_for, load, replay

from flux import FluxConfig, ManualClock, RateLimiter
from flux.config import FluxSettings, SharedConfig


@pytest.mark.parametrize("storage", ["memory", "shared"])
@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_replays_exactly(path: Path, storage: str, tmp_path: Path) -> None:
    vector = load(path)
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
    replay(path, vector, limiter_for(vector, clock, config), clock)


def test_every_algorithm_has_a_vector() -> None:
    from flux._flux import ALGORITHMS

    covered = {json.loads(p.read_text())["algorithm"] for p in VECTORS}
    assert covered == set(ALGORITHMS)
