"""Real gunicorn (4 workers) and uvicorn (2 workers) on the shared-memory store, no Redis:
/metrics, /metrics.json and ``flux monitor`` show the exact sum over every worker, whichever
worker serves them, and a SIGKILLed worker's counts are neither lost nor counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from analytics_support import free_port
from http_server import wait_until_answers
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytestmark = pytest.mark.timeout(240)


class Server:
    """gunicorn or uvicorn serving analytics_shared_app on loopback; stopped by pid."""

    def __init__(self, tmp_path: Path, kind: str, toml: str) -> None:
        self.port, self.analytics_port = free_port(), free_port()
        config = tmp_path / "flux.toml"
        config.write_text(f"{toml}\n[analytics]\nenabled = true\nport = {self.analytics_port}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        env.update(FLUX_CONFIG=str(config), PYTHONPATH=f"{ROOT}:{HERE}")
        if kind == "gunicorn":
            argv = ["-m", "gunicorn", "-w", "4", "-b", f"127.0.0.1:{self.port}"]
            argv += ["--chdir", str(HERE), "--graceful-timeout", "5", "analytics_shared_app:app"]
        else:
            argv = ["-m", "uvicorn", "--workers", "2", "--host", "127.0.0.1"]
            argv += ["--port", str(self.port), "--app-dir", str(HERE), "--lifespan", "off"]
            argv += ["--log-level", "warning", "analytics_shared_app:asgi"]
        self.log = (tmp_path / f"{kind}.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, *argv], cwd=tmp_path, env=env, stdout=self.log, stderr=self.log
        )
        try:
            wait_until_answers(f"http://127.0.0.1:{self.port}/healthz", self.process)
        except BaseException:
            self.stop()
            raise
        time.sleep(1.5)  # every worker booted, so requests spread over all of them

    def hit(self, client: int) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/?client={client}"
        request = urllib.request.Request(url, headers={"Connection": "close"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                document: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:
            document = json.load(exc)
            exc.close()
        return document

    def burst(self, clients: list[int]) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(12) as pool:
            return list(pool.map(self.hit, clients))

    def analytics(self, path: str) -> str | None:
        url = f"http://127.0.0.1:{self.analytics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def sums(self) -> dict[str, float]:
        """The /metrics families summed over their labels (empty: nobody serves it now)."""
        text = self.analytics("/metrics")
        sums: dict[str, float] = {}
        if text is None:
            return sums
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name
                if name == "flux_decisions_total":
                    name += ":" + sample.labels["decision"]
                sums[name] = sums.get(name, 0.0) + sample.value
        return sums

    def wait_for(self, allowed: int, blocked: int, timeout: float = 20.0) -> dict[str, float]:
        """The /metrics sums once they reach ``allowed`` + ``blocked`` decisions (flushes
        reach the record every 0.5 s)."""
        deadline = time.monotonic() + timeout
        sums: dict[str, float] = {}
        while time.monotonic() < deadline:
            sums = self.sums()
            seen = sums.get("flux_decisions_total:allowed", 0) + sums.get(
                "flux_decisions_total:blocked", 0
            )
            if seen >= allowed + blocked:
                break
            time.sleep(0.2)
        return sums

    def workers(self) -> list[int]:
        """The server's worker processes (children of the master)."""
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[1] == str(self.process.pid):
                children.append(int(entry))
        return children

    def analytics_server_pid(self) -> int | None:
        """The worker listening on the analytics port."""
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{self.analytics_port:04X}") and fields[3] == "0A":
                inode = fields[9]
        if inode is None:
            return None
        for pid in self.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        return None

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return text


def _counts(answers: list[dict[str, Any]]) -> tuple[int, int]:
    allowed = sum(1 for answer in answers if answer["allowed"])
    return allowed, len(answers) - allowed


def _assert_sums(server: Server, allowed: int, blocked: int, times: int = 5) -> None:
    """/metrics and /metrics.json, asked several times, give exactly the sum."""
    for _ in range(times):
        sums = server.sums()
        assert sums["flux_decisions_total:allowed"] == allowed, sums
        assert sums["flux_decisions_total:blocked"] == blocked, sums
        text = server.analytics("/metrics.json")
        assert text is not None
        document = json.loads(text)
        assert document["source"] == "shared"
        assert (document["totals"]["allowed"], document["totals"]["blocked"]) == (
            allowed,
            blocked,
        )


def _monitor_once(port: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flux", "monitor", "--once", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("storage", ["zero-config", "shared"])
def test_gunicorn_workers_are_summed_and_a_killed_one_is_kept(tmp_path: Path, storage: str) -> None:
    pytest.importorskip("gunicorn")
    toml = ""
    if storage == "shared":
        toml = f'[flux]\nstorage = "shared"\n\n[shared]\npath = "{tmp_path / "region"}"\n'
    server = Server(tmp_path, "gunicorn", toml)
    log = ""
    try:
        answers = server.burst([i % 6 for i in range(120)])
        assert {answer["storage"] for answer in answers} == {"shared"}
        pids = {answer["pid"] for answer in answers}
        assert len(pids) >= 2, "gunicorn gave every request to one worker"
        allowed, blocked = _counts(answers)
        assert allowed == 6 * 5  # one limit for the whole server: the workers share it
        sums = server.wait_for(allowed, blocked)
        _assert_sums(server, allowed, blocked)
        assert sums["flux_analytics_workers"] >= len(pids)
        assert "all workers" in _monitor_once(server.analytics_port)

        # SIGKILL the worker serving /metrics: another worker takes the port over, gunicorn
        # starts a new worker, and the killed one's counts stay, once.
        victim = server.analytics_server_pid()
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = server.workers()
            if victim not in workers and len(workers) == 4 and server.sums():
                break
            time.sleep(0.2)
        assert server.analytics_server_pid() not in (None, victim)
        _assert_sums(server, allowed, blocked)

        more = server.burst([10 + i % 4 for i in range(60)])
        more_allowed, more_blocked = _counts(more)
        assert more_allowed == 4 * 5
        server.wait_for(allowed + more_allowed, blocked + more_blocked)
        _assert_sums(server, allowed + more_allowed, blocked + more_blocked)
        # In-process stats() of a worker would say the same; the JSON of one limit too.
        text = server.analytics("/stats/api")
        assert text is not None
        assert (
            json.loads(text)["totals"]["total"] == allowed + more_allowed + blocked + more_blocked
        )
    finally:
        log = server.stop()
    assert "Traceback" not in log, log


def test_uvicorn_workers_are_summed(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    server = Server(tmp_path, "uvicorn", "")
    log = ""
    try:
        answers = server.burst([i % 4 for i in range(80)])
        assert {answer["storage"] for answer in answers} == {"shared"}
        allowed, blocked = _counts(answers)
        assert allowed == 4 * 5
        server.wait_for(allowed, blocked)
        _assert_sums(server, allowed, blocked)
    finally:
        log = server.stop()
    assert "Traceback" not in log, log
