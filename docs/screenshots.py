"""Regenerate docs/dashboard.png, docs/monitor.png and docs/monitor.txt from a live demo.

Needs redis-server, chromium and tmux. Starts its own redis-server on a free port, three
worker processes making decisions (several limits, a couple of abusive clients) and recording
them to Redis, ``python -m flux serve`` on a free port, then photographs the dashboard with
headless Chromium and the monitor running in tmux (its pane rendered to PNG through rich's SVG
export and Chromium). Everything it starts is stopped by PID at the end.

    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
TRAFFIC_SECONDS = 24.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def worker(url: str, seed: int, seconds: float) -> None:
    """One application worker: real limiters, every decision recorded to Redis."""
    from flux import RateLimiter, analytics
    from flux.config import AnalyticsConfig, FluxConfig, RedisConfig

    store = FluxConfig()  # decisions on this worker's embedded store
    analytics.configure(
        FluxConfig(
            redis=RedisConfig(url=url),
            analytics=AnalyticsConfig(enabled=True),
            storage="redis",
        ),
        serve=False,
    )
    limits = {
        "login": (RateLimiter(5, 60, config=store), "/login"),
        "api": (RateLimiter(600, 60, burst=50, config=store), "/api/items"),
        "search": (RateLimiter(60, 60, burst=10, config=store), "/api/search"),
        "signup": (RateLimiter(3, 3600, config=store), "/signup"),
    }
    rng = random.Random(seed)
    users = [f"user:{name}" for name in ("alice", "bob", "chen", "dana", "emeka", "farah")]
    ips = [f"ip:10.{seed}.{i // 250}.{i % 250 + 1}" for i in range(600)]
    started = time.time()
    while (elapsed := time.time() - started) < seconds:
        attack = 11 < elapsed < 22  # a credential-stuffing burst
        choice = rng.random()
        calls = []
        if choice < 0.40:
            calls = [("api", rng.choice(users))]
        elif choice < 0.46:
            calls = [("api", "user:scraper-7")] * 12  # a scraper, in bursts
        elif choice < 0.58:
            calls = [("search", rng.choice([*users, "user:scraper-7"]))]
        elif choice < 0.90:
            calls = [("login", rng.choice(ips))]
            if rng.random() < 0.05:
                calls.append(("login", "ip:198.51.100.23"))
        else:
            calls = [("signup", rng.choice(ips[:40]))]
        if attack:
            calls += [("login", "ip:203.0.113.9")] * 3
        for name, identity in calls:
            limiter, endpoint = limits[name]
            begun = time.perf_counter()
            result = limiter.hit(identity)
            analytics.record(name, endpoint, result, time.perf_counter() - begun, identity)
        time.sleep(rng.uniform(0.004, 0.03))
    analytics.shutdown()


def chromium() -> list[str]:
    binary = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if binary is None:
        raise SystemExit("chromium is needed (apt-get install chromium)")
    command = [binary, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
    if os.geteuid() == 0:
        command.append("--no-sandbox")
    return command


def shoot(url: str, target: Path, size: tuple[int, int], profile: str) -> None:
    subprocess.run(
        [
            *chromium(),
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=4000",
            f"--screenshot={target}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def monitor_png(ansi: str, target: Path, profile: str) -> None:
    """Render a captured terminal (ANSI) to PNG: rich's SVG export, photographed by Chromium."""
    from rich.console import Console
    from rich.text import Text

    width = max(len(line) for line in Text.from_ansi(ansi).plain.splitlines())
    console = Console(record=True, width=width, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(Text.from_ansi(ansi), end="")
    svg = console.export_svg(title="python -m flux monitor")
    match = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    assert match, "no viewBox in rich's SVG"
    w, h = (int(float(v)) + 1 for v in match.groups())
    Path(profile).mkdir(parents=True, exist_ok=True)
    page = Path(profile) / "monitor.html"
    page.write_text(
        f"<html><body style='margin:0;background:#fff'>"
        f"<div style='width:{w}px;height:{h}px'>{svg}</div></body></html>"
    )
    shoot(page.as_uri(), target, (w, h), profile)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    tmux = shutil.which("tmux")
    redis_server = shutil.which("redis-server")
    if tmux is None or redis_server is None:
        raise SystemExit("tmux and redis-server are needed")
    redis_port, serve_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    work = tempfile.mkdtemp(prefix="flux-shots-")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLUX_CONFIG", None)
    redis = subprocess.Popen(
        [redis_server, "--port", str(redis_port), "--save", "", "--dir", work],
        stdout=subprocess.DEVNULL,
    )
    serve = None
    workers: list[multiprocessing.process.BaseProcess] = []
    context = multiprocessing.get_context("spawn")
    socket_name = f"flux-shots-{os.getpid()}"
    try:
        wait_port(redis_port)
        workers = [
            context.Process(target=worker, args=(url, seed, TRAFFIC_SECONDS)) for seed in (1, 2, 3)
        ]
        for process in workers:
            process.start()
        serve = subprocess.Popen(
            [sys.executable, "-m", "flux", "serve", "--port", str(serve_port), "--redis", url],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wait_port(serve_port)
        command = (
            f"cd {work} && {sys.executable} -m flux monitor --port {serve_port} --interval 0.5"
        )
        tmux_base = [tmux, "-L", socket_name, "-f", os.devnull]
        subprocess.run(
            [*tmux_base, "new-session", "-d", "-s", "shots", "-x", "132", "-y", "44", command],
            check=True,
            env={k: v for k, v in env.items() if k != "TMUX"},
        )
        time.sleep(TRAFFIC_SECONDS - 5)
        shoot(f"http://127.0.0.1:{serve_port}/", DOCS / "dashboard.png", (1280, 1180), f"{work}/c1")
        capture = [tmux, "-L", socket_name, "capture-pane", "-p", "-t", "shots"]
        plain = subprocess.run(capture, capture_output=True, text=True, check=True).stdout
        ansi = subprocess.run([*capture, "-e"], capture_output=True, text=True, check=True).stdout
        (DOCS / "monitor.txt").write_text(plain.rstrip() + "\n")
        monitor_png(ansi.rstrip("\n"), DOCS / "monitor.png", f"{work}/c2")
    finally:
        for process in workers:
            process.join(TRAFFIC_SECONDS + 10)
        subprocess.run([tmux, "-L", socket_name, "kill-server"], capture_output=True)
        if serve is not None:
            os.kill(serve.pid, signal.SIGINT)
            serve.wait(10)
        os.kill(redis.pid, signal.SIGKILL)
        redis.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {DOCS / 'dashboard.png'}, {DOCS / 'monitor.png'}, {DOCS / 'monitor.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
