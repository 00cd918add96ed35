"""flux-limiter 0.1.19's configuration API, used the way its users used it.

Its ``FluxConfig`` was one flat, mutable dataclass built from keywords; its users set values on
``get_config()`` at import time, before declaring views, and pointed ``$FLUX_CONFIG`` at files
that may not exist. Each test does what such a user did and checks flux honours it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from compat_project import Project
from redis_server import free_port

import flux
from flux import FluxConfig, RateLimiter, RateLimitPolicy, get_config, load_config
from flux._logging import remove_log_handlers
from flux.config import ConfigError, LimitConfig, RateLimitDefaults
from flux.decorators import limits_of

# flux-limiter 0.1.19's flux.__all__, name for name.
FLUX_LIMITER_ALL = [
    "__version__",
    "RateLimiter",
    "RateLimitResult",
    "rate_limit",
    "create_limiter",
    "preload_scripts",
    "RateLimitPolicy",
    "FluxError",
    "RateLimitExceeded",
    "ConnectionError",
    "FluxConfig",
    "load_config",
    "get_config",
    "reload_config",
    "RedisClient",
]

# Every attribute of flux-limiter's FluxConfig, with a valid value other than the default.
FLAT_VALUES: dict[str, Any] = {
    "redis_host": "10.1.2.3",
    "redis_port": 6390,
    "pool_size": 9,
    "timeout_ms": 75,
    "key_prefix": "legacy:",
    "log_file": "flux_debug.log",
    "fail_silently": False,
    "console_logging": True,
    "jitter_enabled": True,
    "jitter_max_ms": 1000,
    "policy": RateLimitPolicy.TOKEN_BUCKET,
    "rate_limit_defaults": RateLimitDefaults(requests=30, period=10, burst=5),
    "rate_limits": {"api": {"requests": 1000, "period": 60, "policy": "gcra"}},
    "analytics_enabled": True,
    "analytics_port": 4555,
    "analytics_stream": "legacy:events",
    "analytics_retention": 5000,
    "analytics_sample_rate": 0.5,
}


def test_every_name_of_flux_limiters_all_imports_from_flux() -> None:
    namespace: dict[str, Any] = {}
    exec(f"from flux import {', '.join(FLUX_LIMITER_ALL)}", namespace)
    assert set(FLUX_LIMITER_ALL) <= set(flux.__all__)
    from flux.limiter import preload_scripts

    assert preload_scripts is flux.preload_scripts
    assert namespace["RedisClient"] is flux.RedisClient


@pytest.mark.parametrize("name", sorted(FLAT_VALUES))
def test_every_flat_attribute_is_a_keyword_readable_and_assignable(name: str) -> None:
    value = FLAT_VALUES[name]
    built = FluxConfig(**{name: value})
    assigned = FluxConfig()
    setattr(assigned, name, value)
    for config in (built, assigned):
        got = getattr(config, name)
        if name == "rate_limits":
            assert got["api"]["requests"] == 1000 and got["api"].get("policy") == "gcra"
        elif name == "rate_limit_defaults":
            assert (got.requests, got.period, got.burst) == (30, 10, 5)
        else:
            assert got == value
    assert built == assigned


def test_flat_keywords_together_as_its_tests_wrote_them() -> None:
    config = FluxConfig(
        analytics_enabled=True,
        analytics_stream="test:events",
        key_prefix="test:",
        policy=RateLimitPolicy.TOKEN_BUCKET,
    )
    assert (config.analytics.enabled, config.analytics.stream) == (True, "test:events")
    assert config.flux.key_prefix == "test:"
    assert RateLimiter(10, 60, config=config).policy == "token_bucket"
    # No Redis setting given: the embedded store, as FluxConfig() alone.
    assert config.storage == "memory"
    assert FluxConfig(fail_silently=True, redis_port=9999).storage == "redis"


def test_bad_flat_values_are_errors_naming_the_attribute() -> None:
    with pytest.raises(ConfigError, match=r"^redis_port: expected") as info:
        FluxConfig(redis_port=70000)
    assert info.value.key == "redis_port"
    config = FluxConfig()
    with pytest.raises(ConfigError, match=r"^fail_silently: expected true or false"):
        config.fail_silently = "no"  # type: ignore[assignment]
    assert config.fail_silently is True  # a failed assignment changes nothing
    with pytest.raises(ConfigError, match=r"^policy: expected one of"):
        config.policy = "nonsense"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"rate_limit_defaults: expected a RateLimitDefaults"):
        config.rate_limit_defaults = {"requests": 5}  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'redis_prot'.*redis_port"):
        FluxConfig(redis_prot=1)


def test_rate_limits_keep_flux_limiters_dict_shape() -> None:
    config = FluxConfig(
        rate_limit_defaults=RateLimitDefaults(50, 30),
        rate_limits={"login": {"requests": 5, "period": 300}, "search": {"period": 1}},
    )
    login = config.rate_limits["login"]
    assert login["requests"] == 5 and login.get("burst") == 5 and "policy" in login
    assert dict(login)["period"] == 300
    # What a table omits comes from the defaults, as flux-limiter's from_config did.
    assert (config.rate_limits["search"]["requests"], config.rate_limits["search"].period) == (
        50,
        1,
    )
    config.rate_limits["admin"] = {"requests": 1, "period": 60}
    assert RateLimiter.from_config("admin", config=config).requests == 1
    with pytest.raises(ConfigError, match=r"rate_limits\.admin\.period"):
        config.rate_limits["admin"] = {"requests": 1, "period": 0}
    assert isinstance(config.rate_limits["login"], LimitConfig)


def test_assignments_at_import_reach_what_is_built_after(project: Project) -> None:
    app = project.load(
        "settings_then_views",
        """
from flux import rate_limit, RateLimiter
from flux.config import get_config

get_config().fail_silently = False
get_config().key_prefix = "myapp:"

@rate_limit(requests=10, period=10)
def view():
    return "ok"

limiter = RateLimiter(requests=5, period=60)
""",
    )
    config = get_config()
    assert config.fail_silently is False and config.flux.fail_silently is False
    assert app.view() == "ok"
    decorated = limits_of(app.view)[0].limiter
    for limiter in (decorated, app.limiter):
        assert limiter.config is config
        if project.store == "redis":
            assert limiter.store.fail_silently is False
            assert limiter.store.key_prefix == "myapp:"
    if project.store == "redis":
        app.limiter.hit("user:1")
        assert any(key.startswith("myapp:") for key in project.redis_keys())


def test_assigning_redis_settings_selects_redis(project: Project) -> None:
    assert get_config().storage == project.store
    if project.server is None:
        return
    config = load_config()
    config.storage = "memory"
    config.redis_port = project.server.port
    # The file chose the store by its [redis] section; an assignment in code chooses it too.
    assert config.storage == "redis"
    settings = FluxConfig(flux=flux.config.FluxSettings(storage="memory"))
    settings.redis_port = project.server.port
    assert settings.storage == "memory"  # [flux] storage chosen explicitly: kept


def test_missing_flux_config_file_keeps_defaults_and_warns(
    fresh_config: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    missing = tmp_path / "nonexistent.toml"
    monkeypatch.setenv("FLUX_CONFIG", str(missing))
    with caplog.at_level(logging.WARNING, logger="flux"):
        config = get_config()
    assert config.rate_limit_defaults.requests == 100
    assert config.jitter_enabled is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(missing) in warnings[0].getMessage()
    with pytest.raises(ConfigError, match="no such file"):
        load_config(missing)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(config_path=missing)


def test_redis_down_fails_open_or_raises_as_configured() -> None:
    port = free_port()  # nothing listens there
    open_limiter = RateLimiter(1, 10, config=FluxConfig(fail_silently=True, redis_port=port))
    assert open_limiter.hit("test").allowed is True
    closed = RateLimiter(1, 10, config=FluxConfig(fail_silently=False, redis_port=port))
    with pytest.raises(flux.ConnectionError):
        closed.hit("test")


def test_console_logging_and_log_file_receive_flux_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "flux_debug.log"
    config = FluxConfig(console_logging=True, log_file=str(log))
    try:
        RateLimiter(1, 1, config=config)
        RateLimiter(2, 1, config=config)  # one handler each, however many limiters
        assert not log.exists()  # created by the first record, not by configuring
        logging.getLogger("flux.redis").warning("breaker open")
    finally:
        remove_log_handlers()
    assert log.read_text(encoding="utf-8").count("breaker open") == 1
    assert capsys.readouterr().err.count("WARNING flux.redis: breaker open") == 1


def test_presets_follow_the_defaults_assigned_in_code(project: Project) -> None:
    config = get_config()
    config.rate_limits["search"] = {"requests": 10}
    # At import time, before any limiter: flux-limiter resolved presets when they were used.
    config.policy = "leaky_bucket"
    config.rate_limit_defaults = RateLimitDefaults(requests=20, period=30)
    assert config.policy is RateLimitPolicy.LEAKY_BUCKET  # RateLimitDefaults has no policy
    search = RateLimiter.from_config("search")
    assert (search.requests, search.period, search.policy) == (10, 30, "leaky_bucket")
    strict = RateLimiter.from_config("strict")  # names its own policy, in flux.toml
    assert (strict.requests, strict.period, strict.policy) == (2, 60, "token_bucket")
    assert RateLimiter().policy == "leaky_bucket" and RateLimiter().requests == 20
