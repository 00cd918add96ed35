"""Real gunicorn, three workers, one Redis: /metrics shows the sum of every worker."""

from __future__ import annotations

import json
import os
import signal
import socket
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
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytest.importorskip("gunicorn")


def _wait_port(port: int, process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("gunicorn did not start")


def _request(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        document = json.load(exc)
    return document


def _sums(text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name == "flux_decisions_total":
                name += ":" + sample.labels["decision"]
            sums[name] = sums.get(name, 0.0) + sample.value
    return sums


def test_gunicorn_workers_are_summed(redis_url: str, tmp_path: Path) -> None:
    app_port, analytics_port = free_port(), free_port()
    config = tmp_path / "flux.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n[analytics]\nenabled = true\nport = {analytics_port}\n'
    )
    env = {**os.environ, "FLUX_CONFIG": str(config), "PYTHONPATH": f"{ROOT}:{HERE}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{app_port}",
            "--chdir",
            str(HERE),
            "--graceful-timeout",
            "5",
            "analytics_wsgi:app",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_port(app_port, process)
        urls = [f"http://127.0.0.1:{app_port}/hello?client={i % 6}" for i in range(120)]
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(_request, urls))
        pids = {answer["pid"] for answer in answers}
        allowed = sum(answer["allowed"] for answer in answers)
        blocked = len(answers) - allowed
        assert len(pids) >= 2, "gunicorn gave every request to one worker"
        sums: dict[str, float] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{analytics_port}/metrics", timeout=5
                ) as response:
                    sums = _sums(response.read().decode())
            except OSError:
                sums = {}
            if sums.get("flux_decisions_total:allowed", 0) + sums.get(
                "flux_decisions_total:blocked", 0
            ) >= len(answers):
                break
            time.sleep(0.2)
        assert sums["flux_decisions_total:allowed"] == allowed
        assert sums["flux_decisions_total:blocked"] == blocked
        assert sums["flux_analytics_workers"] == len(pids)
        # Each worker keeps its own embedded limit (3 per client): more than 3 allowed per
        # client overall proves the counts came from several processes.
        assert allowed > 6 * 3
    finally:
        os.kill(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert "Traceback" not in err, err
