"""flux-limiter 0.1.19's command line, run as its users and scripts ran it.

``python -m flux.cli init [path] [--force|-f]`` and ``python -m flux.cli clear [--config|-c
path]``: the same commands, flags, exit codes and the lines scripts look for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from compat_project import Project

from flux import RateLimiter


def flux_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m flux.cli <args>`` in ``cwd``, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", "flux.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_prints_what_flux_limiter_printed(tmp_path: Path) -> None:
    target = tmp_path / "flux.toml"
    result = flux_cli("init", str(target), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"Generated configuration file at: {target}\n"
    assert "jitter_enabled = false" in target.read_text()

    target.write_text("old_content")
    refused = flux_cli("init", str(target), cwd=tmp_path)
    assert refused.returncode == 1
    assert f"Error: '{target}' already exists. Use --force to overwrite." in refused.stderr
    assert target.read_text() == "old_content"
    for flag in ("--force", "-f"):
        forced = flux_cli("init", str(target), flag, cwd=tmp_path)
        assert forced.returncode == 0 and "Generated configuration file" in forced.stdout
        assert target.read_text() != "old_content"


def test_init_without_a_path_writes_flux_toml_here(tmp_path: Path) -> None:
    result = flux_cli("init", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip().endswith(str(tmp_path / "flux.toml"))


def test_clear_deletes_the_projects_keys(project: Project) -> None:
    limiter = RateLimiter(requests=5, period=60)
    for key in ("user:1", "user:2", "user:3"):
        limiter.hit(key)
    result = flux_cli("clear", "--config", str(project.toml), cwd=project.dir)
    if project.server is None:
        # The embedded store's state lives in each application process: nothing to clear.
        assert result.returncode == 1
        assert "embedded" in result.stderr and "RateLimiter.reset" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"Connecting to Redis at redis://127.0.0.1:{project.server.port}/0...",
        "Scanning for keys matching 'compat:*'...",
        "Found 3 keys. Deleting...",
        "Done! Rate limit state cleared.",
    ]
    assert project.redis_keys() == []
    again = flux_cli("clear", "-c", str(project.toml), cwd=project.dir)
    assert again.returncode == 0
    assert "No keys found." in again.stdout.splitlines()
