"""`python -m flux demo` runs end to end: real HTTP, 200s, then 429s, then 200s again."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_200s_turning_into_429s_and_back(tmp_path) -> None:
    # From an empty directory: the demo must not depend on any flux.toml.
    done = subprocess.run(
        [sys.executable, "-m", "flux", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    statuses = [line.split()[1] for line in lines if line.lstrip().startswith("#")]
    assert statuses[:5] == ["200"] * 5
    assert statuses[5:8] == ["429"] * 3
    assert statuses[8] == "200"
    assert "Retry-After: 1" in done.stdout
    assert '"demo";r=4;t=1' in done.stdout
    assert "7 allowed, 3 limited." in done.stdout
