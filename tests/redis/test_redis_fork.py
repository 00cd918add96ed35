"""Fork after start-up on the Redis store: gunicorn ``--preload``, multiprocessing with fork.

Week-one fault: a store built before the fork left the child's first new thread spinning at
100 % of a core (``parking_lot`` state copied mid-use) and gunicorn's SIGTERM waited for its
30 s timeout. Each child must get fresh connections, use no CPU while idle, and stop at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from http_server import wait_until_answers
from redis_server import RedisServer, free_port

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

pytest.importorskip("gunicorn")
pytest.importorskip("flask")


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def _threads(pid: int) -> int:
    """How many threads ``pid`` runs now."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Threads:")[1].split()[0])


def _native_threads(pid: int) -> list[str]:
    """Names of threads of ``pid`` that native code named (Python's keep the process name)."""
    tasks = Path(f"/proc/{pid}/task")
    main = (tasks / str(pid) / "comm").read_text().strip()
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
    return [name for name in names if name != main]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_gunicorn_preload_serves_exactly_idles_quietly_and_stops_fast(
    redis: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "flux.toml"
    config.write_text(f'[redis]\nurl = "{redis.url}"\n')
    port = free_port()
    env = {**os.environ, "FLUX_CONFIG": str(config), "PYTHONPATH": f"{ROOT}:{HERE}"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-w", "2", "--preload"),
            *("-b", f"127.0.0.1:{port}", "--graceful-timeout", "30", "fork_app:app"),
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(base + "/ping", process)
        # A new connection per request: gunicorn hands them to both workers.
        statuses = [
            httpx.get(base + "/", headers={"Connection": "close"}, timeout=10).status_code
            for _ in range(12)
        ]
        assert statuses == [200] * 5 + [429] * 7
        workers = _children(process.pid)
        assert len(workers) == 2
        # The cause, deterministically: a store starts no thread of its own (the old pool
        # started three in the master, parked where a fork corrupts them). The master runs
        # only Python's threads (gunicorn's control socket), a sync worker only its own.
        assert _native_threads(process.pid) == []
        assert [_threads(pid) for pid in workers] == [1, 1]
        before = {pid: _cpu_ticks(pid) for pid in workers}
        time.sleep(2.0)  # measuring idle CPU use over a fixed interval
        spent = {pid: _cpu_ticks(pid) - before[pid] for pid in workers}
        # A spinning thread burns ~200 ticks in 2 s; an idle sync worker a handful.
        assert all(ticks < 20 for ticks in spent.values()), spent
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


FORKING_PROGRAM = textwrap.dedent(
    """
    import asyncio, os, sys
    from flux import FluxConfig, RateLimiter
    from flux.config import RedisConfig

    config = FluxConfig(redis=RedisConfig(url=sys.argv[1]), storage="redis")
    limiter = RateLimiter(10, 3600, config=config)
    assert limiter.storage == "redis"
    # The parent uses both paths first: a pooled connection and the async I/O threads.
    assert limiter.hit("k").allowed
    status = open("/proc/self/status").read()
    assert status.split("Threads:")[1].split()[0] == "1", "a sync hit started a thread"
    assert asyncio.run(limiter.ahit("k")).allowed

    async def three():
        return await asyncio.wait_for(asyncio.gather(*(limiter.ahit("k") for _ in range(3))), 5)

    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            sync = [limiter.hit("k").allowed for _ in range(3)]
            more = asyncio.run(three())
            os._exit(sum(sync) + sum(r.allowed for r in more))
        children.append(pid)
    allowed = 2 + sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children)
    # The parent's own connections and threads still work after its children forked.
    allowed += limiter.hit("k").allowed + asyncio.run(limiter.ahit("k")).allowed
    print(allowed)
    """
)


def test_fork_after_sync_and_async_use_gives_children_working_stores(
    redis: RedisServer,
) -> None:
    # 2 in the parent, 6 in each child, 2 more in the parent: 16 hits on a limit of 10.
    done = subprocess.run(
        [sys.executable, "-c", FORKING_PROGRAM, redis.url],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"
