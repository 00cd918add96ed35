"""Analytics on the shared-memory store: each process's record in the region's analytics file,
summed by readers; real processes, SIGKILL, torn copies, interrupted folds."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux import analytics
from flux.analytics import area as area_module
from flux.analytics.aggregate import Aggregate, fold
from flux.analytics.area import FILE_BYTES, SLOTS, area_path, open_area
from flux.analytics.shared_sink import SharedReader, SharedSink, decode, encode, merge_payloads
from flux.config import FluxConfig, SharedConfig

ROOT = Path(__file__).resolve().parent.parent.parent

# A process that publishes `allowed` allowed and `blocked` blocked decisions (blocked ones
# against identity "ip:bad") as its record, says "ready", then waits for stdin to close.
PUBLISHER = """
import sys, time
from flux.analytics.aggregate import fold
from flux.analytics.shared_sink import SharedSink

region, allowed, blocked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sink = SharedSink(region)
events = [(time.time(), "api", "/x", True, 0.0001, "ip:ok", None)] * allowed
events += [(time.time(), "api", "/x", False, 0.0001, "ip:bad", None)] * blocked
sink.write(events, fold(events), 1.0, {"dropped": 0.0})
print("ready", flush=True)
sys.stdin.read()
"""


class Publisher:
    """A real process publishing a record; stopped (or killed) by pid."""

    def __init__(self, region: Path, allowed: int, blocked: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(region), str(allowed), str(blocked)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close()

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def region(tmp_path: Path) -> Path:
    return tmp_path / "region"


@pytest.fixture
def publishers() -> Iterator[list[Publisher]]:
    started: list[Publisher] = []
    yield started
    for publisher in started:
        publisher.stop()


def _totals(region: Path) -> tuple[float, float, int | None]:
    snapshot = SharedReader(area_path(region)).snapshot()
    counts = snapshot.aggregate.counts.get(("api", "/x"))
    if counts is None:
        return 0.0, 0.0, snapshot.workers
    return counts.allowed, counts.blocked, snapshot.workers


def test_the_records_of_every_process_are_summed(region: Path, publishers: list[Publisher]) -> None:
    for allowed, blocked in ((5, 1), (7, 2), (11, 3)):
        publishers.append(Publisher(region, allowed, blocked))
    for _ in range(3):  # any reader, any number of times
        assert _totals(region) == (23, 6, 3)
    snapshot = SharedReader(area_path(region)).snapshot()
    assert snapshot.source == "shared"
    assert snapshot.aggregate.blocked_by == {"api": {"ip:bad": 6.0}}
    assert len(snapshot.aggregate.recent) == 6
    mode = stat.S_IMODE(area_path(region).stat().st_mode)
    assert mode == 0o600
    assert area_path(region).stat().st_size == FILE_BYTES


def test_a_killed_process_keeps_its_counts_once(region: Path, publishers: list[Publisher]) -> None:
    for allowed, blocked in ((5, 1), (7, 2)):
        publishers.append(Publisher(region, allowed, blocked))
    publishers[0].kill()
    assert _totals(region) == (12, 3, 1)  # gone, not forgotten
    # A new process claims a slot: the dead record is folded into the retired totals.
    publishers.append(Publisher(region, 100, 0))
    assert _totals(region) == (112, 3, 2)
    publishers[1].stop()
    publishers.append(Publisher(region, 1, 0))
    assert _totals(region) == (113, 3, 2)
    area = open_area(area_path(region), create=False)
    assert area is not None
    try:
        owners = [area.owner(slot) for slot in range(1, SLOTS)]
    finally:
        area.close()
    # Only the two live processes hold a slot; the others were folded and freed.
    assert sum(owner != (0, 0) for owner in owners) == 2


def test_a_copy_torn_by_a_kill_leaves_the_previous_one(region: Path) -> None:
    area = open_area(area_path(region), create=True)
    assert area is not None
    try:
        slot = area.claim((os.getpid(), 1), merge_payloads)
        assert slot is not None
        area.write(slot, b"first")
        area.write(slot, b"second")
        assert area.read(slot) == b"second"
        # The newer copy half overwritten (the writer was killed in the middle): its CRC fails.
        heads = area._copy_heads(slot)
        newer = 0 if heads[0][0] > heads[1][0] else 1
        start = area._record(slot) + area_module._OWNER_BYTES + newer * area_module._COPY_SPAN
        body = start + area_module._COPY_HEAD.size
        area._map[body : body + 3] = b"XXX"
        assert area.read(slot) == b"first"
    finally:
        area.close()


def test_an_interrupted_fold_is_finished_not_repeated(region: Path) -> None:
    events = [(time.time(), "api", "/x", True, -1.0, None, None)] * 4
    payload = encode(fold(events), {})
    assert payload is not None
    area = open_area(area_path(region), create=True)
    assert area is not None
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead = (gone.pid, 7)  # no such process any more
        slot = area.claim(dead, merge_payloads)
        assert slot is not None
        area.write(slot, payload)
        # Slot 0 written with the dead owner absorbed, then the folder was killed before it
        # freed the slot: readers must not count the record twice.
        area._write_retired({(slot, *dead)}, merge_payloads(None, [payload]))
        assert _totals(region) == (4, 0, 0)
        assert area.fold(merge_payloads) == 1
        assert area.owner(slot) == (0, 0)
        assert _totals(region) == (4, 0, 0)
    finally:
        area.close()


def test_a_file_others_can_read_is_refused(region: Path) -> None:
    path = area_path(region)
    SharedSink(region).write([], Aggregate(), 1.0)
    path.chmod(0o644)
    with pytest.raises(OSError, match="mode 0600"):
        open_area(path, create=False)
    snapshot = SharedReader(path).snapshot()
    assert snapshot.store_up is False
    path.chmod(0o600)


def test_a_record_too_big_publishes_fewer_identities() -> None:
    events = [
        (time.time(), "api", "/x", False, -1.0, f"ip:{i:08x}-{os.urandom(8).hex()}", None)
        for i in range(5000)
    ]
    aggregate = fold(events)
    payload = encode(aggregate, {}, 8 * 1024)
    assert payload is not None and len(payload) <= 8 * 1024
    decoded, _ = decode(payload)
    assert decoded.counts[("api", "/x")].blocked == 5000
    assert len(decoded.blocked_by.get("api", {})) < 5000


def test_stats_and_a_forked_child_sum_on_the_shared_store(region: Path) -> None:
    config = FluxConfig(storage="shared", shared=SharedConfig(path=str(region)))
    analytics.configure(config, enabled=True, serve=False)
    for _ in range(3):
        analytics.record("api", "/x", True)
    pid = os.fork()
    if pid == 0:  # the child records its own decisions, in a record of its own
        code = 1
        try:
            analytics.record("api", "/x", False, identity="ip:child")
            analytics.flush()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for _ in range(2):
        document = analytics.stats()
        assert document["source"] == "shared"
        assert document["totals"]["allowed"] == 3
        assert document["totals"]["blocked"] == 1
    # Read from another configuration (what `flux monitor`/`serve` do): the same sum.
    analytics.flush()
    assert analytics.stats(config=config)["totals"]["total"] == 4
    assert analytics.stats(identity="ip:child")["identity"]["blocked"] == 1
    # Configured again in this process: its totals go on from where they were.
    analytics.configure(config, enabled=True, serve=False)
    analytics.record("api", "/x", True)
    analytics.flush()
    assert analytics.stats()["totals"]["allowed"] == 4


def test_stale_automatic_regions_take_their_analytics_file_along(tmp_path: Path) -> None:
    from flux import _prefork

    prefix = f"flux-{os.getuid()}-auto-gunicorn-"
    live_start = _prefork._started(os.getpid())
    live = tmp_path / f"{prefix}{os.getpid()}-{live_start}"
    gone = tmp_path / f"{prefix}{os.getpid()}-1"
    for path in (live, gone):
        path.write_text("")
        Path(f"{path}.analytics").write_text("")
    _prefork._remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, f"{live.name}.analytics"]
    )


def test_prometheus_text_stays_valid_with_the_shared_source(region: Path) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    from flux.analytics import prometheus

    events = [(time.time(), 'a"b', "/x\\y", True, 0.001, None, None)]
    sink = SharedSink(region)
    sink.write(events, fold(events), 1.0, {"dropped": 0.0})
    text = prometheus.render(sink.snapshot())
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["flux_store_up"].samples[0].labels == {"source": "shared"}
    assert families["flux_analytics_workers"].samples[0].value == 1
    decisions = {s.labels["decision"]: s.value for s in families["flux_decisions"].samples}
    assert decisions == {"allowed": 1, "blocked": 0}


def test_flux_serve_reads_the_region_named_in_flux_toml(
    region: Path, publishers: list[Publisher], tmp_path: Path
) -> None:
    from analytics_support import free_port
    from http_server import wait_until_answers

    publishers.append(Publisher(region, 4, 2))
    port = free_port()
    toml = tmp_path / "flux.toml"
    toml.write_text(f'[flux]\nstorage = "shared"\n\n[shared]\npath = "{region}"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "flux", "serve", "-c", str(toml), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics.json"
        wait_until_answers(url, process, timeout=20)
        import httpx

        document = httpx.get(url, timeout=5).json()
        assert document["source"] == "shared"
        assert (document["totals"]["allowed"], document["totals"]["blocked"]) == (4, 2)
        assert document["store"]["workers"] == 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_live_record_folded_by_a_process_that_cannot_see_it_counts_once(region: Path) -> None:
    # Another pid namespace sharing the file cannot see this process, takes it for gone and
    # folds its record: the process notices, starts a new record from zero, keeps its batch.
    sink = SharedSink(region)
    three = [(time.time(), "api", "/x", True, -1.0, None, None)] * 3
    sink.write(three, fold(three), 1.0)
    area = open_area(area_path(region), create=True)
    assert area is not None
    try:
        slot = next(s for s in range(1, SLOTS) if area.owner(s) == area_module.me())
        published = area.read(slot)
        assert published is not None
        area._write_retired({(slot, *area_module.me())}, merge_payloads(None, [published]))
        area._set_owner(slot, (0, 0))
    finally:
        area.close()
    assert _totals(region)[:2] == (3, 0)
    two = [(time.time(), "api", "/x", True, -1.0, None, None)] * 2
    sink.write(two, fold(two), 1.0)
    assert _totals(region)[:2] == (5, 0)
