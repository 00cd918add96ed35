"""Client clocks cannot matter on Redis: decisions use the server's TIME.

Two real processes whose wall clocks differ by 5 s share one limit. The skew is made for real:
the second process runs with a small LD_PRELOAD library (compiled here) that adds 5 s to
CLOCK_REALTIME, gettimeofday and time, so both its Python (time.time) and flux's Rust code
(SystemTime) see a clock 5 s ahead; the test checks that it does. Their alternating hits get
exactly the decisions one process would get. As a control, the same two processes passing
their own clocks as the time of each hit (what a store trusting client clocks would do) let
more hits through than the limit allows, so the test would notice if client time leaked in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from fluxredis import Worker
from redis_server import RedisServer

SKEW = 5.0

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/time.h>
#include <time.h>

#define SKEW_SECONDS 5

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_gettime_fn real = NULL;
    if (real == NULL) {
        real = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    }
    int rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        ts->tv_sec += SKEW_SECONDS;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0 && tv != NULL) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) {
        *out = ts.tv_sec;
    }
    return ts.tv_sec;
}
"""


@pytest.fixture(scope="module")
def skew_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the clock-skew library")
    directory = tmp_path_factory.mktemp("skew")
    source = directory / "skew.c"
    source.write_text(SHIM)
    library = directory / "libskew.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        check=True,
    )
    return library


def alternate(a: Worker, b: Worker, key: str, client_clock: bool) -> list[dict[str, object]]:
    """A, B, A, B: four hits on `key` under 2 per 10 s (GCRA: one every 5 s, burst 2)."""
    request = {"op": "hit", "requests": 2, "period": 10.0, "key": key}
    request["client_clock"] = client_clock
    return [w.ask(request) for w in (a, b, a, b)]


def test_clock_skew_between_processes_changes_nothing(
    redis: RedisServer, skew_library: Path
) -> None:
    a = Worker(redis.url)
    b = Worker(redis.url, env={**os.environ, "LD_PRELOAD": str(skew_library)})
    try:
        # The skew is real in the second process, for Python and for flux's Rust side alike.
        probe = {"op": "hit", "requests": 1000, "period": 1.0, "key": "probe"}
        for worker, skew in ((a, 0.0), (b, SKEW)):
            reply = worker.ask(probe)
            now = time.time()
            assert reply["time"] - now == pytest.approx(skew, abs=1.0)
            assert reply["rust_time"] - now == pytest.approx(skew, abs=1.0)

        server_time = alternate(a, b, "skewed-server", client_clock=False)
        assert [r["allowed"] for r in server_time] == [True, True, False, False]
        assert [r["remaining"] for r in server_time] == [1, 0, 0, 0]
        # Both denied hits wait for the same moment: ~5 s after the first hit.
        for denied in server_time[2:]:
            assert denied["retry_after"] == pytest.approx(5.0, abs=1.0)

        # Control: with each process's own clock as the time, the skewed one gets extra hits.
        client_time = alternate(a, b, "skewed-client", client_clock=True)
        assert sum(bool(r["allowed"]) for r in client_time) > 2
    finally:
        a.stop()
        b.stop()
