"""RateLimiter.refund and arefund on the embedded and shared stores: the refund vectors replay
exactly, a refund restores exactly what it gives back and never more, bad costs are refused,
and threads hitting and refunding one key stay exact."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from vectors import REFUND_VECTORS, limiter_for, load, replay

from flux import FluxConfig, ManualClock, RateLimiter
from flux._flux import ALGORITHMS
from flux.config import FluxSettings, SharedConfig

HOUR = 3600.0
STORAGES = ["memory", "shared"]


def config_for(storage: str, tmp_path: Path) -> FluxConfig:
    """The embedded store, or a shared region of the test's own."""
    if storage == "memory":
        return FluxConfig()
    return FluxConfig(
        flux=FluxSettings(storage="shared"), shared=SharedConfig(path=str(tmp_path / "region"))
    )


def algorithms_of(storage: str) -> list[str]:
    """The algorithms `storage` holds (the shared store refuses sliding_log)."""
    return [a for a in ALGORITHMS if not (storage == "shared" and a == "sliding_log")]


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("path", REFUND_VECTORS, ids=[p.stem for p in REFUND_VECTORS])
def test_refund_vector_replays_exactly(path: Path, storage: str, tmp_path: Path) -> None:
    vector = load(path)
    if storage == "shared" and vector["algorithm"] == "sliding_log":
        pytest.skip("the shared store does not hold sliding_log")
    clock = ManualClock(0)
    replay(path, vector, limiter_for(vector, clock, config_for(storage, tmp_path)), clock)


def test_every_algorithm_has_a_refund_vector() -> None:
    assert {load(p)["algorithm"] for p in REFUND_VECTORS} == set(ALGORITHMS)


@pytest.mark.parametrize("storage", STORAGES)
def test_a_refund_gives_back_exactly_one_more_hit_and_never_more_than_full(
    storage: str, tmp_path: Path
) -> None:
    config = config_for(storage, tmp_path)
    for algorithm in algorithms_of(storage):
        clock = ManualClock(1_000_000)
        lim = RateLimiter(3, 60, policy=algorithm, clock=clock, config=config, name=algorithm)
        assert [lim.hit("a").allowed for _ in range(4)] == [True, True, True, False]
        after = lim.refund("a")
        assert (after.allowed, after.remaining, after.limit) == (True, 1, 3), algorithm
        assert [lim.hit("a").allowed for _ in range(2)] == [True, False], algorithm
        assert lim.refund("a", cost=3).remaining == 3, algorithm
        assert lim.refund("a", cost=3).remaining == 3, algorithm
        assert lim.hit("a", cost=3).allowed and not lim.hit("a").allowed, algorithm
        # A key never seen: nothing to give back, nothing created.
        assert lim.refund("nobody").remaining == 3
        assert lim.peek("nobody").remaining == 3


@pytest.mark.parametrize("storage", STORAGES)
def test_bad_costs_are_refused_like_a_hit(storage: str, tmp_path: Path) -> None:
    lim = RateLimiter(3, 60, config=config_for(storage, tmp_path))
    lim.hit("a")
    for cost in (0, 4, -1):
        with pytest.raises(ValueError, match=f"cost {cost}"):
            lim.refund("a", cost)
    assert lim.peek("a").remaining == 2


@pytest.mark.parametrize("storage", STORAGES)
def test_arefund_is_refund_for_async_code(storage: str, tmp_path: Path) -> None:
    lim = RateLimiter(2, HOUR, config=config_for(storage, tmp_path))

    async def run() -> tuple[int, bool]:
        await lim.ahit("a", cost=2)
        refunded = await lim.arefund("a")
        return refunded.remaining, (await lim.ahit("a")).allowed

    assert asyncio.run(run()) == (1, True)
    with pytest.raises(ValueError, match="cost 3"):
        asyncio.run(lim.arefund("a", 3))


def most_held_at_once(lim: RateLimiter, threads: int = 6, rounds: int = 300) -> int:
    """Threads that hit ``lim`` on one key and refund every hit that passed; the most hits held
    (taken, not yet refunded) at once, as the threads counted them (never above the truth)."""
    held = most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal held, most
        for _ in range(rounds):
            if lim.hit("one").allowed:
                with lock:
                    held += 1
                    most = max(most, held)
                with lock:
                    held -= 1
                lim.refund("one")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return most


@pytest.mark.parametrize("storage", STORAGES)
def test_threads_hitting_and_refunding_one_key_never_hold_more_than_the_quota(
    storage: str, tmp_path: Path
) -> None:
    config = config_for(storage, tmp_path)
    for algorithm in algorithms_of(storage):
        lim = RateLimiter(5, HOUR, policy=algorithm, config=config, name=algorithm)
        assert most_held_at_once(lim) <= 5, algorithm
        # Every hit taken was given back: the key is exactly full again.
        assert lim.peek("one").remaining == 5, algorithm
