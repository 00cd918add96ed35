"""``python -m flux check`` passes only configurations that work: every quota as the limiter
will build it, and the configured Redis reached (credentials, scripts, a round trip).

Week-one fault: ``period = 1e-9`` and ``period = 1e12`` passed, then the application died at
import with a ValueError naming neither file nor key; a wrong Redis password passed too. And
while failing open, responses carried made-up numbers (``X-RateLimit-Remaining: 2``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flask
import pytest
from fluxredis import redis_config
from redis_server import RedisServer, free_port

from flux import ConfigError, load_config, rate_limit
from flux.cli import main


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["check", str(path)])
    out, err = capsys.readouterr()
    return status, out + err


@pytest.mark.parametrize(
    ("period", "reason"),
    [("1e-9", "finer than one request per nanosecond"), ("1e12", "at most one year")],
)
def test_quotas_the_core_refuses_fail_check_and_load_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], period: str, reason: str
) -> None:
    path = tmp_path / "flux.toml"
    path.write_text(f"[rate_limits.api]\nrequests = 100\nperiod = {period}\n")
    status, output = _check(path, capsys)
    assert status == 1
    assert f"{path}: rate_limits.api" in output and reason in output
    with pytest.raises(ConfigError, match=r"rate_limits\.api.*" + reason) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_check_reaches_redis_and_reports_why_it_cannot(
    make_server: Callable[..., RedisServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_server("--requirepass", "s3cret-pass")
    path = tmp_path / "flux.toml"
    good = f'[redis]\nhost = "127.0.0.1"\nport = {server.port}\npassword = "s3cret-pass"\n'
    path.write_text(good)
    status, output = _check(path, capsys)
    assert status == 0, output
    assert "scripts loaded" in output and output.rstrip().endswith("OK")

    path.write_text(good.replace("s3cret-pass", "wrong-pass"))
    status, output = _check(path, capsys)
    assert status == 1
    assert "rejected the credentials" in output
    assert "wrong-pass" not in output  # the password is never printed

    path.write_text(f'[redis]\nurl = "redis://127.0.0.1:{free_port()}"\ntimeout_ms = 100\n')
    status, output = _check(path, capsys)
    assert status == 1 and "Connection refused" in output


def test_failing_open_responses_carry_no_made_up_numbers() -> None:
    config = redis_config(f"redis://127.0.0.1:{free_port()}", timeout_ms=100)
    app = flask.Flask(__name__)

    @app.get("/")
    @rate_limit(requests=3, period=60, config=config)
    def index() -> str:
        return "ok"

    reply = app.test_client().get("/")
    assert reply.status_code == 200
    assert not [name for name, _ in reply.headers.items() if "ratelimit" in name.lower()]
