"""Zero configuration on pre-fork servers: the workers of one server share a region private to
it; a plain process keeps the per-process store. Detection from /proc, and real gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flux import RateLimiter, _flux, _prefork
from flux import config as config_module
from flux.config import FluxConfig, FluxSettings, load_config

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["gunicorn", "-w", "4", "app:app"], "gunicorn"),
        (["/venv/bin/python3", "/venv/bin/gunicorn", "app:app"], "gunicorn"),
        (["gunicorn: master [app:app]"], "gunicorn"),
        (["python", "-m", "uvicorn", "app:app", "--workers", "4"], "uvicorn"),
        (["/usr/bin/uwsgi", "--ini", "app.ini"], "uwsgi"),
        (["/venv/bin/python", "/venv/bin/hypercorn", "app:app"], "hypercorn"),
        (["granian", "--interface", "asgi", "app:app"], "granian"),
        (["python", "script.py"], None),
        (["python", "-m", "pytest"], None),
        (["bash"], None),
        ([], None),
    ],
)
def test_server_names_are_read_from_command_lines(argv: list[str], name: str | None) -> None:
    assert _prefork._server_name(argv) == name


def test_a_worker_is_told_by_its_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    parent, me = os.getppid(), os.getpid()
    lines = {parent: ["gunicorn", "-w", "4", "app:app"], me: ["gunicorn", "-w", "4", "app:app"]}
    monkeypatch.setattr(_prefork, "_cmdline", lambda pid: lines.get(pid, []))
    monkeypatch.setattr(_prefork, "_started", lambda pid: "1234")
    assert _prefork._detect() == _prefork.Server("gunicorn", parent, "1234")
    # The master of gunicorn --preload builds limiters before forking: itself.
    lines = {parent: ["bash"], me: ["gunicorn", "--preload", "app:app"]}
    assert _prefork._detect() == _prefork.Server("gunicorn", me, "1234")
    # A plain process.
    lines = {parent: ["bash"], me: ["python", "script.py"]}
    assert _prefork._detect() is None


def test_limits_the_region_cannot_hold_keep_the_memory_store_in_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    region = _flux.SharedRegion(tmp_path / "region")
    monkeypatch.setattr(_prefork, "server_region", lambda: region)
    assert RateLimiter(3, 60, config=FluxConfig()).storage == "shared"
    log = RateLimiter(3, 60, policy="sliding_log", config=FluxConfig())
    assert log.storage == "memory"
    assert "sliding_log limit cannot be shared" in caplog.text
    # Other invalid arguments still raise.
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(3, 60, burst=0, config=FluxConfig())


def test_a_plain_process_keeps_the_memory_store() -> None:
    assert _prefork.detect() is None
    assert RateLimiter(3, 60, config=FluxConfig()).storage == "memory"


def test_only_a_configuration_without_storage_is_automatic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config_module.STORAGE_ENV, raising=False)
    monkeypatch.delenv(config_module.REDIS_URL_ENV, raising=False)
    assert not FluxConfig().storage_configured
    assert FluxConfig(storage="memory").storage_configured
    assert FluxConfig(flux=FluxSettings(storage="memory")).storage_configured
    toml = tmp_path / "flux.toml"
    toml.write_text("[flux]\nkey_prefix = 'x:'\n")
    assert not load_config(toml).storage_configured
    toml.write_text("[flux]\nstorage = 'memory'\n")
    assert load_config(toml).storage_configured


def _several_warnings(text: str) -> int:
    return text.count("looks like one of several workers")


def test_one_of_several_workers_on_the_memory_store_is_warned_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(config_module.STORAGE_ENV, raising=False)
    monkeypatch.delenv(config_module.REDIS_URL_ENV, raising=False)
    monkeypatch.setattr(_prefork, "_warned_unshared", False)
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    for _ in range(3):
        assert RateLimiter(3, 60, config=FluxConfig()).storage == "memory"
    assert _several_warnings(caplog.text) == 1
    assert "WEB_CONCURRENCY=4" in caplog.text
    assert 'storage = "shared"' in caplog.text and "Redis" in caplog.text


def test_a_configured_store_or_a_single_worker_is_not_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(config_module.STORAGE_ENV, raising=False)
    monkeypatch.delenv(config_module.REDIS_URL_ENV, raising=False)
    monkeypatch.setattr(_prefork, "_warned_unshared", False)
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    # Storage chosen on purpose: no warning.
    RateLimiter(3, 60, config=FluxConfig(storage="memory"))
    assert _several_warnings(caplog.text) == 0
    # One worker, and no sibling with this command line: no warning.
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    monkeypatch.setattr(_prefork, "_siblings_like_me", lambda: False)
    RateLimiter(3, 60, config=FluxConfig())
    assert _several_warnings(caplog.text) == 0


SIBLING = """
import logging, os, sys, time
from pathlib import Path

logging.basicConfig(level=logging.WARNING, format="%(message)s")
here = Path(os.environ["SIBLINGS_DIR"])
(here / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 20
while len(list(here.glob("ready-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
from flux import RateLimiter
RateLimiter(3, 60)
RateLimiter(5, 60)
(here / f"done-{os.getpid()}").touch()
while len(list(here.glob("done-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
"""


@pytest.mark.timeout(60)
def test_siblings_with_one_command_line_are_warned_once_each(tmp_path: Path) -> None:
    # Two processes of one parent with the same command line, not under a known server: each
    # counts alone, so each logs the warning, once.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env.pop("WEB_CONCURRENCY", None)
    env["PYTHONPATH"] = str(REPO)
    env["SIBLINGS_DIR"] = str(tmp_path)
    argv = [sys.executable, "-c", SIBLING]
    children = [
        subprocess.Popen(argv, cwd=tmp_path, env=env, stderr=subprocess.PIPE) for _ in range(2)
    ]
    try:
        errors = [child.communicate(timeout=40)[1].decode() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for error in errors:
        assert _several_warnings(error) == 1, error
        assert "same command line" in error
    # Alone, the same program is not warned.
    for path in tmp_path.iterdir():
        path.unlink()
    (tmp_path / "ready-0").touch()
    (tmp_path / "done-0").touch()
    alone = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, timeout=40)
    assert _several_warnings(alone.stderr.decode()) == 0, alone.stderr


# --- real gunicorn ---------------------------------------------------------------------------

APP = """
from flux import RateLimiter

limiter = RateLimiter(10, 60)


def app(environ, start_response):
    allowed = limiter.hit("client").allowed
    status = "200 OK" if allowed else "429 Too Many Requests"
    start_response(status, [("Content-Type", "text/plain"), ("X-Flux-Storage", limiter.storage)])
    return [b"ok" if allowed else b"limited"]


async def asgi(scope, receive, send):
    allowed = limiter.hit("client").allowed
    headers = [(b"content-type", b"text/plain"), (b"x-flux-storage", limiter.storage.encode())]
    status = 200 if allowed else 429
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok" if allowed else b"limited"})
"""

# The command lines of the servers tested: four workers each.
GUNICORN = ["-m", "gunicorn", "-w", "4", "--chdir", "{dir}"]
SERVERS = {
    "gunicorn-sync": [*GUNICORN, "-k", "sync", "app:app"],
    "gunicorn-gthread": [*GUNICORN, "-k", "gthread", "app:app"],
    # The master builds the limiter (and opens the region) before forking its workers.
    "gunicorn-preload": [*GUNICORN, "--preload", "-k", "sync", "app:app"],
    "uvicorn": [
        *["-m", "uvicorn", "--workers", "4", "--lifespan", "off", "--app-dir", "{dir}"],
        *["--log-level", "warning", "app:asgi"],
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`kind` (a key of SERVERS) serving APP from `directory` on a free port; stopped by pid."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        env["PYTHONPATH"] = str(REPO)
        self.log_path = directory / f"server-{self.port}.log"
        self.log = self.log_path.open("wb")
        argv = [arg.format(dir=directory) for arg in SERVERS[kind]]
        # After "-m <server>": where to listen.
        if kind.startswith("gunicorn"):
            argv[2:2] = ["-b", f"127.0.0.1:{self.port}"]
        else:
            argv[2:2] = ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=directory,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.close()
                raise AssertionError(f"{kind} exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise AssertionError(f"{kind} did not start in 30 s")
        # Let every worker boot, so the requests below are spread over all four.
        time.sleep(1.5)

    def request(self) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.port}/"
        try:
            with urllib.request.urlopen(url, timeout=20) as response:
                return response.status, response.headers["X-Flux-Storage"]
        except urllib.error.HTTPError as error:
            return error.code, error.headers["X-Flux-Storage"]

    def burst(self, count: int) -> list[tuple[int, str]]:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(lambda _: self.request(), range(count)))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def statuses(results: list[tuple[int, str]]) -> tuple[int, int]:
    return sum(s == 200 for s, _ in results), sum(s == 429 for s, _ in results)


def auto_regions(kind: str) -> set[str]:
    directory = Path(_flux_default_dir())
    server = kind.split("-")[0]
    return {p.name for p in directory.glob(f"flux-{os.getuid()}-auto-{server}-*")}


def files_of(kind: str, *servers: Server) -> set[str]:
    """The automatic regions (and their analytics files) of these servers, by master pid:
    other test runs on the machine may have regions of their own in the same directory."""
    server = kind.split("-")[0]
    return {
        name
        for one in servers
        for name in auto_regions(kind)
        if name.startswith(f"flux-{os.getuid()}-auto-{server}-{one.process.pid}-")
    }


def _flux_default_dir() -> str:
    from flux import _flux

    return str(Path(_flux.default_shared_path("x")).parent)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", list(SERVERS))
def test_workers_of_a_server_share_one_limit_with_no_configuration(
    tmp_path: Path, kind: str
) -> None:
    pytest.importorskip(kind.split("-")[0])
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    before = auto_regions(kind)
    first = Server(tmp_path, kind)
    second = None
    try:
        results = first.burst(40)
        assert statuses(results) == (10, 30), results
        assert {storage for _, storage in results} == {"shared"}
        # Another server side by side has its own limit.
        second = Server(tmp_path, kind)
        assert statuses(second.burst(40)) == (10, 30)
        assert statuses(first.burst(5)) == (0, 5)
        regions = {n for n in files_of(kind, first, second) if not n.endswith(".analytics")}
        assert len(regions) == 2, regions
    finally:
        first.stop()
        if second is not None:
            second.stop()
    # A restarted server starts fresh, and the files of servers that are gone are removed.
    restarted = Server(tmp_path, kind)
    try:
        assert statuses(restarted.burst(40)) == (10, 30)
        gone = [first, second] if second is not None else [first]
        assert not files_of(kind, *gone), files_of(kind, *gone)
        regions = {n for n in files_of(kind, restarted) if not n.endswith(".analytics")}
        assert len(regions) == 1, regions
    finally:
        restarted.stop()
        for name in auto_regions(kind) - before:
            (Path(_flux_default_dir()) / name).unlink(missing_ok=True)


@pytest.mark.timeout(180)
def test_two_servers_naming_one_region_share_one_limit(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    region = tmp_path / "region"
    # Each server reads its own ./flux.toml; both name the same region, so they share one limit
    # (unlike the zero-configuration case above, where each server has a private region).
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            (directory / "app.py").write_text(textwrap.dedent(APP))
            (directory / "flux.toml").write_text(
                f'[flux]\nstorage = "shared"\n\n[shared]\npath = "{region}"\n'
            )
            servers.append(Server(directory, "gunicorn-sync"))
        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(lambda i: servers[i % 2].request(), range(40)))
        assert statuses(results) == (10, 30), results
        assert {storage for _, storage in results} == {"shared"}
    finally:
        for server in servers:
            server.stop()
