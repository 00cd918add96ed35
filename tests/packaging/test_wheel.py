"""The built wheel installs and runs where no Rust toolchain exists.

`make test-wheel` builds the wheel (`make wheel`) and runs this file; the plain test run
(`make test-python`) deselects it (marker ``packaging``), as it needs a built wheel. The wheel
is FLUX_WHEEL, else the newest dist/flux_ratelimit-*.whl. The fresh virtualenvs are made
by each interpreter in FLUX_WHEEL_PYTHONS (paths, space-separated; `make test-wheel` lists
every CPython 3.10+ it finds), else by the one running the tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


def _wheel() -> Path:
    if os.environ.get("FLUX_WHEEL"):
        return Path(os.environ["FLUX_WHEEL"])
    wheels = sorted((REPO / "dist").glob("flux_ratelimit-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        pytest.fail("no wheel in dist/: run `make wheel` (or `make test-wheel`)")
    return wheels[-1]


def _version() -> str:
    # The workspace version (a regex: tomllib is 3.11+ and this must run on 3.10).
    text = (REPO / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', text, re.M | re.S)
    assert match, "no [workspace.package] version in Cargo.toml"
    return match.group(1)


def test_wheel_is_manylinux_abi3_with_metadata() -> None:
    wheel = _wheel()
    assert re.search(r"manylinux_2_17_x86_64|manylinux_2_\d+_\w+", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta_name).decode()
    assert "Name: flux-ratelimit\n" in metadata
    assert f"Version: {_version()}\n" in metadata
    assert "Requires-Python: >=3.10" in metadata
    assert "Project-URL: Source" in metadata
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    assert any(n.endswith("LICENSE") for n in names), names
    assert any(re.match(r"flux/_flux\..*so$", n) for n in names), names
    assert "flux/py.typed" in names


def _pythons() -> list[str]:
    listed = os.environ.get("FLUX_WHEEL_PYTHONS", "").split()
    return listed or [sys.executable]


@pytest.mark.parametrize("python", _pythons())
def test_wheel_runs_demo_in_fresh_venv_without_cargo(tmp_path: Path, python: str) -> None:
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    minor = subprocess.run(
        [str(py), "-c", "import sys; print(sys.version_info[1])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # PATH holds the new virtualenv only: no cargo, no rustc, no maturin can be reached.
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    install = [str(py), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    if int(minor) >= 11:
        install.append("--no-index")  # no dependency at all on 3.11+: prove it offline
    subprocess.run([*install, str(_wheel())], check=True, env=env, timeout=180)
    empty = tmp_path / "empty"
    empty.mkdir()
    for tool in ("cargo", "rustc", "maturin"):
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is reachable"

    where = subprocess.run(
        [str(py), "-c", "import flux._flux as m; print(m.__file__)"],
        env=env,
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's module, not the repo's dev build

    version = subprocess.run(
        [str(py), "-m", "flux", "--version"],
        env=env,
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == f"flux-ratelimit {_version()}"

    demo = subprocess.run(
        [str(py), "-m", "flux", "demo"],
        env=env,
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 0, demo.stderr
    assert "7 allowed, 3 limited." in demo.stdout
    assert list(empty.iterdir()) == []  # the demo leaves the directory as it found it
