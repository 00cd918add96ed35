"""flux.config: search order, defaults, every key, every bad value, env overrides, caching."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import threading
from pathlib import Path

import pytest

from flux import config as config_module
from flux.config import (
    AnalyticsConfig,
    FluxConfig,
    FluxSettings,
    LimitConfig,
    RateLimitDefaults,
    RateLimitPolicy,
    RedisConfig,
    find_config_file,
    get_config,
    load_config,
    reload_config,
)
from flux.exceptions import ConfigError, FluxError


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in an empty directory, with no flux variables and no cached config."""
    for name in (config_module.CONFIG_ENV, config_module.REDIS_URL_ENV, config_module.STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(config_module, "_cached", None)


def write(path: Path, text: str) -> Path:
    """Write a config file (creating parents) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> FluxConfig:
    return load_config(write(tmp_path / "flux.toml", text))


def load_error(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path / "bad" / "flux.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, path.absolute()


# --- defaults --------------------------------------------------------------------------------

DEFAULTS = [
    ("redis", "host", "127.0.0.1"),
    ("redis", "port", 6379),
    ("redis", "pool_size", 5),
    ("redis", "timeout_ms", 200),
    ("redis", "url", None),
    ("redis", "cluster", False),
    ("redis", "password", None),
    ("redis", "db", 0),
    ("flux", "key_prefix", "flux:"),
    ("flux", "fail_silently", True),
    ("flux", "console_logging", False),
    ("flux", "log_file", None),
    ("flux", "jitter_enabled", False),
    ("flux", "jitter_max_ms", 500),
    ("flux", "storage", None),
    ("flux", "trusted_proxies", ()),
    ("flux", "hash_keys", False),
    ("flux", "max_keys", None),
    ("flux", "headers_on_success", True),
    ("flux", "ipv6_prefix", None),
    ("flux", "forwarded_header", "X-Forwarded-For"),
    ("flux", "exempt_ips", ()),
    ("analytics", "enabled", False),
    ("analytics", "port", 4444),
    ("analytics", "stream", "flux:events"),
    ("analytics", "retention", 100_000),
    ("analytics", "sample_rate", 1.0),
    ("rate_limit", "policy", RateLimitPolicy.GCRA),
    ("rate_limit", "requests", 100),
    ("rate_limit", "period", 60),
    ("rate_limit", "burst", 100),
    ("rate_limit", "fail_silently", None),
    ("rate_limit", "limit", None),
]


@pytest.mark.parametrize(("section", "key", "default"), DEFAULTS)
def test_defaults_without_a_file(section: str, key: str, default: object) -> None:
    config = load_config()
    assert config.path is None
    assert getattr(getattr(config, section), key) == default


def test_defaults_cover_every_key() -> None:
    listed = {(section, key) for section, key, _ in DEFAULTS}
    for section, cls in [
        ("redis", RedisConfig),
        ("flux", FluxSettings),
        ("analytics", AnalyticsConfig),
        ("rate_limit", LimitConfig),
    ]:
        for f in dataclasses.fields(cls):
            assert (section, f.name) in listed


def test_no_file_means_memory_store_and_no_named_limits() -> None:
    config = load_config()
    assert config.storage == "memory"
    assert dict(config.rate_limits) == {}
    assert config == FluxConfig()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "flux.toml", "")
    config = load_config(path)
    assert config.path == path.absolute()
    assert dataclasses.replace(config, path=None) == FluxConfig()


# --- every key with a non-default value ------------------------------------------------------

FULL = """
[redis]
host = "redis.internal"
port = 6380
pool_size = 16
timeout_ms = 50
cluster = ["10.0.0.1:7000", "[::1]:7001"]
password = "s3cret"
db = 0

[flux]
key_prefix = "app:"
fail_silently = false
console_logging = true
log_file = "flux.log"
jitter_enabled = true
jitter_max_ms = 250
storage = "redis"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"]
hash_keys = true
max_keys = 1000
headers_on_success = false

[analytics]
enabled = true
port = 9100
stream = "app:events"
retention = 500
sample_rate = 0.25

[rate_limit]
policy = "sliding_window"
requests = 20
period = 0.5
burst = 4

[rate_limits.api]
requests = 1000
period = 3600
burst = 50
policy = "leaky_bucket"
"""


def test_every_key_is_read(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL)
    assert config.redis == RedisConfig(
        host="redis.internal",
        port=6380,
        pool_size=16,
        timeout_ms=50,
        cluster=("10.0.0.1:7000", "[::1]:7001"),
        password="s3cret",
        db=0,
    )
    flux = config.flux
    assert (flux.key_prefix, flux.fail_silently, flux.console_logging) == ("app:", False, True)
    assert (flux.log_file, flux.jitter_enabled, flux.jitter_max_ms) == ("flux.log", True, 250)
    assert (flux.storage, flux.hash_keys, flux.max_keys) == ("redis", True, 1000)
    assert flux.headers_on_success is False
    assert flux.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert config.analytics == AnalyticsConfig(True, 9100, "app:events", 500, 0.25)
    assert config.rate_limit == LimitConfig(20, 0.5, 4, RateLimitPolicy.SLIDING_WINDOW)
    assert config.limit("api") == LimitConfig(1000, 3600, 50, RateLimitPolicy.LEAKY_BUCKET)
    assert config.storage == "redis"


def test_url_is_read(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[redis]\nurl = "rediss://:pw@cache:6390/2"\n')
    assert config.redis.url == "rediss://:pw@cache:6390/2"
    assert config.redis.connection_url() == "rediss://:pw@cache:6390/2"
    assert config.redis.connection_url(redact=True) == "rediss://:***@cache:6390/2"


@pytest.mark.parametrize("url", ["redis://localhost", "unix:///tmp/redis.sock", "redis://h:1/15"])
def test_url_schemes(tmp_path: Path, url: str) -> None:
    assert load_text(tmp_path, f'[redis]\nurl = "{url}"\n').redis.url == url


def test_connection_url_from_parts() -> None:
    assert RedisConfig().connection_url() == "redis://127.0.0.1:6379/0"
    redis = RedisConfig(host="::1", port=7000, password="p@ss", db=3)
    assert redis.connection_url() == "redis://:p%40ss@[::1]:7000/3"
    assert redis.connection_url(redact=True) == "redis://:***@[::1]:7000/3"
    assert "p@ss" not in repr(redis)


def test_cluster_true_and_integers_for_fractions(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[redis]\ncluster = true\n[analytics]\nsample_rate = 0\n")
    assert config.redis.cluster is True
    assert config.analytics.sample_rate == 0.0
    assert isinstance(config.analytics.sample_rate, float)


def test_period_keeps_int_or_float(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[rate_limit]\nperiod = 86400\n[rate_limits.f]\nperiod = 0.25\n")
    assert config.rate_limit.period == 86400 and isinstance(config.rate_limit.period, int)
    assert config.limit("f").period == 0.25


@pytest.mark.parametrize(
    ("written", "policy"),
    [
        ("gcra", RateLimitPolicy.GCRA),
        ("token_bucket", RateLimitPolicy.TOKEN_BUCKET),
        ("leaky_bucket", RateLimitPolicy.LEAKY_BUCKET),
        ("fixed_window", RateLimitPolicy.FIXED_WINDOW),
        ("sliding_window", RateLimitPolicy.SLIDING_WINDOW),
        ("sliding_log", RateLimitPolicy.SLIDING_LOG),
        ("GCRA", RateLimitPolicy.GCRA),  # flux-limiter lower-cased policy names
        ("Token-Bucket", RateLimitPolicy.TOKEN_BUCKET),
        ("fcfs", RateLimitPolicy.FIXED_WINDOW),  # flux-limiter's Lua name for fixed_window
    ],
)
def test_policy_names(tmp_path: Path, written: str, policy: RateLimitPolicy) -> None:
    assert load_text(tmp_path, f'[rate_limit]\npolicy = "{written}"\n').rate_limit.policy is policy


def test_policies_are_the_cores_algorithms() -> None:
    # Python names no algorithm the core does not count, and misses none (same order).
    from flux import _flux

    assert [policy.value for policy in RateLimitPolicy] == list(_flux.ALGORITHMS)


def test_policy_is_a_string() -> None:
    assert RateLimitPolicy.GCRA == "gcra"
    assert str(RateLimitPolicy.TOKEN_BUCKET) == "token_bucket"
    assert RateLimitPolicy("SLIDING_LOG") is RateLimitPolicy.SLIDING_LOG
    with pytest.raises(ValueError):
        RateLimitPolicy("nope")


# --- named limits inherit from [rate_limit] --------------------------------------------------

INHERIT = """
[rate_limit]
policy = "token_bucket"
requests = 10
period = 5
burst = 3

[rate_limits.only_period]
period = 1

[rate_limits.own_requests]
requests = 50

[rate_limits.own_burst]
burst = 7

[rate_limits.own_policy]
policy = "gcra"

[rate_limits.empty]
"""


def test_named_limits_inherit_from_rate_limit(tmp_path: Path) -> None:
    config = load_text(tmp_path, INHERIT)
    tb = RateLimitPolicy.TOKEN_BUCKET
    assert config.limit("only_period") == LimitConfig(10, 1, 3, tb)
    assert config.limit("own_requests") == LimitConfig(50, 5, 50, tb)
    assert config.limit("own_burst") == LimitConfig(10, 5, 7, tb)
    assert config.limit("own_policy") == LimitConfig(10, 5, 3, RateLimitPolicy.GCRA)
    assert config.limit("empty") == config.rate_limit


def test_named_limit_without_rate_limit_section_uses_builtin_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[rate_limits.login]\nrequests = 5\n")
    assert config.limit("login") == LimitConfig(5, 60, 5, RateLimitPolicy.GCRA)


def test_limit_lookup(tmp_path: Path) -> None:
    config = load_text(tmp_path, INHERIT)
    assert config.limit() is config.rate_limit
    assert config.limit(None) is config.rate_limit
    with pytest.raises(ConfigError) as info:
        config.limit("missing")
    message = str(info.value)
    assert '"missing"' in message
    assert "empty, only_period, own_burst, own_policy, own_requests" in message
    assert info.value.key == "rate_limits.missing"
    assert info.value.path == (tmp_path / "flux.toml").absolute()


def test_limit_lookup_without_named_limits() -> None:
    with pytest.raises(ConfigError, match="none defined"):
        FluxConfig().limit("api")


def test_limit_names_with_dots_are_quoted_in_keys(tmp_path: Path) -> None:
    error, _ = load_error(tmp_path, '[rate_limits."v1.api"]\nperiod = -1\n')
    assert error.key == 'rate_limits."v1.api".period'


# --- search order ----------------------------------------------------------------------------


def prefixed(path: Path, prefix: str) -> Path:
    return write(path, f'[flux]\nkey_prefix = "{prefix}"\n')


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = Path.cwd()
    explicit = prefixed(tmp_path / "explicit.toml", "explicit:")
    from_env = prefixed(tmp_path / "env.toml", "env:")
    local = prefixed(cwd / "flux.toml", "local:")
    nested = prefixed(cwd / "config" / "flux.toml", "nested:")
    monkeypatch.setenv("FLUX_CONFIG", str(from_env))

    assert load_config(explicit).flux.key_prefix == "explicit:"
    assert load_config(str(explicit)).path == explicit.absolute()
    assert load_config().flux.key_prefix == "env:"
    monkeypatch.delenv("FLUX_CONFIG")
    assert load_config().flux.key_prefix == "local:"
    assert load_config().path == local
    local.unlink()
    assert load_config().flux.key_prefix == "nested:"
    assert load_config().path == nested
    nested.unlink()
    assert load_config().path is None


def test_relative_env_path_is_relative_to_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    prefixed(Path.cwd() / "conf" / "x.toml", "rel:")
    monkeypatch.setenv("FLUX_CONFIG", "conf/x.toml")
    assert load_config().flux.key_prefix == "rel:"
    assert find_config_file() == Path.cwd() / "conf" / "x.toml"


def test_empty_flux_config_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_CONFIG", "")
    prefixed(Path.cwd() / "flux.toml", "local:")
    assert load_config().flux.key_prefix == "local:"


def test_directory_named_flux_toml_is_skipped_by_the_search() -> None:
    (Path.cwd() / "flux.toml").mkdir()
    prefixed(Path.cwd() / "config" / "flux.toml", "nested:")
    assert load_config().flux.key_prefix == "nested:"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.path == missing.absolute()
    assert str(missing) in str(info.value) and "no such file" in str(info.value)


def test_missing_env_file_warns_and_gives_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    prefixed(Path.cwd() / "flux.toml", "local:")  # must not be used instead
    gone = tmp_path / "gone.toml"
    monkeypatch.setenv("FLUX_CONFIG", str(gone))
    with caplog.at_level(logging.WARNING, logger="flux.config"):
        config = load_config()
    assert config == FluxConfig()
    assert [r.getMessage() for r in caplog.records] == [
        f"$FLUX_CONFIG names {gone}, which does not exist: using the built-in defaults"
    ]
    with pytest.raises(ConfigError, match=r"gone\.toml: no such file"):
        load_config(gone)


def test_directory_as_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


# --- malformed files and bad values ----------------------------------------------------------


def test_malformed_toml(tmp_path: Path) -> None:
    error, path = load_error(tmp_path, "[flux\nkey_prefix = 1\n")
    assert error.path == path
    assert str(path) in str(error) and "invalid TOML" in str(error)
    assert isinstance(error, ValueError) and isinstance(error, FluxError)


def test_duplicate_key_is_malformed(tmp_path: Path) -> None:
    error, _ = load_error(tmp_path, "[redis]\nport = 1\nport = 2\n")
    assert "invalid TOML" in str(error)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[flux]\nkey_prefix = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path.absolute()


def test_unknown_section(tmp_path: Path) -> None:
    error, path = load_error(tmp_path, "[ratelimit]\nrequests = 5\n")
    assert error.key == "ratelimit"
    assert "unknown section" in str(error) and "'rate_limit'" in str(error)
    assert str(error).startswith(f"{path}: ratelimit: ")


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    error, _ = load_error(tmp_path, "[rate_limits.api]\nperod = 5\n")
    assert error.key == "rate_limits.api.perod"
    assert "did you mean 'period'?" in str(error)
    assert "requests, period, burst, policy" in str(error)


BAD_VALUES = [
    # (toml, dotted key, words the message must contain)
    ("[redis]\nport = 0", "redis.port", "an integer from 1 to 65535"),
    ("[redis]\nport = 65536", "redis.port", "an integer from 1 to 65535"),
    ('[redis]\nport = "6379"', "redis.port", '"6379" (a string)'),
    ("[redis]\nport = true", "redis.port", "true (a boolean)"),
    ("[redis]\npool_size = 0", "redis.pool_size", "an integer >= 1"),
    ("[redis]\ntimeout_ms = 1.5", "redis.timeout_ms", "an integer >= 1"),
    ('[redis]\nhost = ""', "redis.host", "a non-empty string"),
    ("[redis]\nhost = 1", "redis.host", "a non-empty string"),
    ("[redis]\ndb = -1", "redis.db", "an integer >= 0"),
    ("[redis]\npassword = 5", "redis.password", "a string"),
    ('[redis]\nurl = "http://x"', "redis.url", "redis://, rediss:// or unix://"),
    ('[redis]\nurl = "redis://h:99999"', "redis.url", "Port out of range"),
    ('[redis]\nurl = "redis://h/x"', "redis.url", "not a number"),
    ('[redis]\nurl = "unix://"', "redis.url", "socket path"),
    ("[redis]\ncluster = []", "redis.cluster", '"host:port" nodes'),
    ('[redis]\ncluster = "yes"', "redis.cluster", "true, false or"),
    ('[redis]\ncluster = ["nohost"]', "redis.cluster", "is not host:port"),
    ('[redis]\ncluster = ["h:0"]', "redis.cluster", "is not host:port"),
    ('[redis]\ncluster = ["[zz]:1"]', "redis.cluster", "is not host:port"),
    ("[redis]\ncluster = true\ndb = 1", "redis.db", "Redis Cluster has only database 0"),
    ('[redis]\nurl = "redis://h"\nport = 1', "redis.url", "either url or"),
    ("[flux]\nkey_prefix = 1", "flux.key_prefix", "a string"),
    ('[flux]\nfail_silently = "yes"', "flux.fail_silently", "true or false"),
    ("[flux]\nfail_silently = 1", "flux.fail_silently", "true or false"),
    ("[flux]\nconsole_logging = 0", "flux.console_logging", "true or false"),
    ('[flux]\nlog_file = ""', "flux.log_file", "a non-empty string"),
    ('[flux]\njitter_enabled = "false"', "flux.jitter_enabled", "true or false"),
    ("[flux]\njitter_max_ms = -1", "flux.jitter_max_ms", "an integer >= 0"),
    ("[flux]\njitter_max_ms = true", "flux.jitter_max_ms", "an integer >= 0"),
    ('[flux]\nstorage = "disk"', "flux.storage", '"memory", "redis"'),
    ('[flux]\ntrusted_proxies = "10.0.0.0/8"', "flux.trusted_proxies", "an array of CIDRs"),
    ('[flux]\ntrusted_proxies = ["10.0.0.1/8"]', "flux.trusted_proxies", 'mean "10.0.0.0/8"'),
    ('[flux]\ntrusted_proxies = ["nonsense"]', "flux.trusted_proxies", "not a valid CIDR"),
    ('[flux]\ntrusted_proxies = ["10.0.0.0/33"]', "flux.trusted_proxies", "not a valid CIDR"),
    ("[flux]\ntrusted_proxies = [1]", "flux.trusted_proxies", "is not a string"),
    ("[flux]\nhash_keys = 0", "flux.hash_keys", "true or false"),
    ("[flux]\nmax_keys = 0", "flux.max_keys", "an integer >= 1"),
    ('[flux]\nheaders_on_success = "true"', "flux.headers_on_success", "true or false"),
    ("[flux]\nipv6_prefix = 129", "flux.ipv6_prefix", "128"),
    ('[rate_limit]\nfail_silently = "no"', "rate_limit.fail_silently", "true or false"),
    ("[flux]\nipv6_prefix = 0", "flux.ipv6_prefix", "1"),
    ('[flux]\nforwarded_header = "X-Real-IP"', "flux.forwarded_header", "Forwarded"),
    ('[flux]\nexempt_ips = ["10.0.0.1/8"]', "flux.exempt_ips", 'mean "10.0.0.0/8"'),
    ('[flux]\nexempt_ips = "::1"', "flux.exempt_ips", "an array of CIDRs"),
    ('[rate_limit]\nlimit = "10/fortnight"', "rate_limit.limit", "unknown unit 'fortnight'"),
    ('[rate_limit]\nlimit = "10"', "rate_limit.limit", '"<count>/<unit>"'),
    ("[rate_limit]\nlimit = 10", "rate_limit.limit", "a rate string"),
    ('[rate_limit]\nlimit = "5/minute"\nrequests = 5', "rate_limit.requests", "not both"),
    ('[rate_limits.a]\nlimit = "5/s; 9/day"\nburst = 3', "rate_limits.a.burst", "one rate"),
    ('[analytics]\nenabled = "no"', "analytics.enabled", "true or false"),
    ("[analytics]\nport = 70000", "analytics.port", "an integer from 1 to 65535"),
    ("[analytics]\nport = 0", "analytics.port", "an integer from 1 to 65535"),
    ('[analytics]\nstream = ""', "analytics.stream", "a non-empty string"),
    ("[analytics]\nretention = 0", "analytics.retention", "an integer >= 1"),
    ("[analytics]\nsample_rate = 2.0", "analytics.sample_rate", "a number from 0.0 to 1.0"),
    ("[analytics]\nsample_rate = -0.1", "analytics.sample_rate", "a number from 0.0 to 1.0"),
    ("[analytics]\nsample_rate = true", "analytics.sample_rate", "a number from 0.0 to 1.0"),
    ("[analytics]\nsample_rate = nan", "analytics.sample_rate", "a number from 0.0 to 1.0"),
    ("[rate_limit]\nrequests = 0", "rate_limit.requests", "an integer >= 1"),
    ("[rate_limit]\nrequests = true", "rate_limit.requests", "true (a boolean)"),
    ("[rate_limit]\nrequests = 1.5", "rate_limit.requests", "an integer >= 1"),
    ("[rate_limit]\nperiod = -1", "rate_limit.period", "a number of seconds > 0"),
    ("[rate_limit]\nperiod = 0", "rate_limit.period", "a number of seconds > 0"),
    ("[rate_limit]\nperiod = inf", "rate_limit.period", "a number of seconds > 0"),
    ("[rate_limit]\nperiod = true", "rate_limit.period", "a number of seconds > 0"),
    ('[rate_limit]\nperiod = "60"', "rate_limit.period", "a number of seconds > 0"),
    ("[rate_limit]\nburst = 0", "rate_limit.burst", "an integer >= 1"),
    ('[rate_limit]\npolicy = "foo"', "rate_limit.policy", '"gcra", "token_bucket"'),
    ("[rate_limit]\npolicy = 1", "rate_limit.policy", "one of"),
    ("[rate_limits.api]\nperiod = -1", "rate_limits.api.period", "a number of seconds > 0"),
    ("[rate_limits.api]\nburst = 0", "rate_limits.api.burst", "an integer >= 1"),
    ('[rate_limits.api]\npolicy = "lifo"', "rate_limits.api.policy", "one of"),
    ("[rate_limits]\napi = 5", "rate_limits.api", "a table ([rate_limits.api])"),
    ('[rate_limits.""]\nrequests = 5', 'rate_limits.""', "a non-empty limit name"),
    ("rate_limits = 5", "rate_limits", "a table of named limits"),
    ('redis = "localhost"', "redis", "a table ([redis])"),
    ("flux = 1", "flux", "a table ([flux])"),
    ("analytics = []", "analytics", "a table ([analytics])"),
    ("rate_limit = true", "rate_limit", "a table ([rate_limit])"),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD_VALUES)
def test_bad_value_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    error, path = load_error(tmp_path, text + "\n")
    assert error.path == path
    assert error.key == key
    message = str(error)
    assert message.startswith(f"{path}: {key}: expected ")
    assert words in message


def test_bad_values_cover_every_key() -> None:
    tested = {key for _, key, _ in BAD_VALUES}
    for section, _, _ in DEFAULTS:
        assert section in tested or any(k.startswith(section + ".") for k in tested)
    for section, key, _ in DEFAULTS:
        assert f"{section}.{key}" in tested, f"{section}.{key} has no bad-value test"


# --- storage and the environment -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "storage"),
    [
        ("", "memory"),
        ("[redis]\n", "redis"),
        ('[redis]\nhost = "cache"\n', "redis"),
        ('[redis]\n[flux]\nstorage = "memory"\n', "memory"),
        ('[flux]\nstorage = "redis"\n', "redis"),
    ],
)
def test_storage_resolution(tmp_path: Path, text: str, storage: str) -> None:
    assert load_text(tmp_path, text).storage == storage


def test_redis_url_env_selects_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REDIS_URL", "redis://env-host:6390/1")
    config = load_config()
    assert config.storage == "redis"
    assert config.redis.url == "redis://env-host:6390/1"


def test_redis_url_env_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REDIS_URL", "redis://env-host:6390/1")
    config = load_text(tmp_path, '[redis]\nhost = "file-host"\npassword = "x"\npool_size = 9\n')
    assert config.redis.connection_url() == "redis://env-host:6390/1"
    assert config.redis.host == "127.0.0.1"  # replaced by the URL, not mixed with it
    assert config.redis.password is None
    assert config.redis.pool_size == 9
    config = load_text(tmp_path, '[redis]\nurl = "redis://file-host"\n')
    assert config.redis.url == "redis://env-host:6390/1"


def test_redis_url_env_does_not_override_explicit_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUX_REDIS_URL", "redis://env-host")
    assert load_text(tmp_path, '[flux]\nstorage = "memory"\n').storage == "memory"


def test_bad_redis_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.key == "FLUX_REDIS_URL"
    assert "FLUX_REDIS_URL: expected a redis://" in str(info.value)


def test_empty_redis_url_env_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REDIS_URL", "")
    assert load_config().storage == "memory"


# --- objects built in code -------------------------------------------------------------------


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        LimitConfig(requests=0)
    assert info.value.key == "rate_limit.requests" and info.value.path is None
    with pytest.raises(ConfigError, match=r"rate_limit\.period"):
        LimitConfig(period=-1)
    with pytest.raises(ConfigError, match=r"redis\.port"):
        RedisConfig(port=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"analytics\.sample_rate"):
        AnalyticsConfig(sample_rate=1.5)
    with pytest.raises(ConfigError, match=r"flux\.trusted_proxies"):
        FluxSettings(trusted_proxies=("bad",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"rate_limits\.x"):
        FluxConfig(rate_limits={"x": 5})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"rate_limits\.x\.requests"):
        FluxConfig(rate_limits={"x": {"requests": 0}})


def test_direct_construction_normalises() -> None:
    limit = LimitConfig(5, 1, policy="Token_Bucket")  # type: ignore[arg-type]
    assert limit.policy is RateLimitPolicy.TOKEN_BUCKET and limit.burst == 5
    assert RateLimitDefaults is LimitConfig
    settings = FluxSettings(trusted_proxies=["10.0.0.0/8"])  # type: ignore[arg-type]
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    assert FluxConfig(flux=FluxSettings(storage="redis")).storage == "redis"


def test_sections_are_frozen_and_assignments_are_checked(tmp_path: Path) -> None:
    # FluxConfig itself is mutable (flux-limiter's was); its sections stay frozen values.
    config = load_text(tmp_path, INHERIT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rate_limit.requests = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="storage"):
        config.storage = "disk"
    with pytest.raises(ConfigError, match="expected a FluxSettings"):
        config.flux = {"fail_silently": False}  # type: ignore[assignment]
    config.storage = "redis"
    assert config.storage == "redis"
    config.rate_limits["new"] = {"requests": 7}
    assert config.rate_limits["new"] == LimitConfig(7, 5, policy="token_bucket")  # type: ignore[arg-type]


def test_flux_limiter_flat_names(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL)
    assert (config.redis_host, config.redis_port) == ("redis.internal", 6380)
    assert (config.pool_size, config.timeout_ms) == (16, 50)
    assert (config.key_prefix, config.log_file) == ("app:", "flux.log")
    assert (config.fail_silently, config.console_logging) == (False, True)
    assert (config.jitter_enabled, config.jitter_max_ms) == (True, 250)
    assert config.policy is RateLimitPolicy.SLIDING_WINDOW
    assert config.rate_limit_defaults is config.rate_limit
    assert (config.analytics_enabled, config.analytics_port) == (True, 9100)
    assert (config.analytics_stream, config.analytics_retention) == ("app:events", 500)
    assert config.analytics_sample_rate == 0.25


# --- the process-wide cache ------------------------------------------------------------------


def test_get_config_is_cached_until_reload(tmp_path: Path) -> None:
    local = prefixed(Path.cwd() / "flux.toml", "one:")
    first = get_config()
    assert first.flux.key_prefix == "one:"
    prefixed(local, "two:")
    assert get_config() is first
    assert reload_config().flux.key_prefix == "two:"
    assert get_config().flux.key_prefix == "two:"
    other = prefixed(tmp_path / "other.toml", "other:")
    assert reload_config(other) is get_config()
    assert get_config().path == other.absolute()


def test_failed_reload_keeps_the_previous_config(tmp_path: Path) -> None:
    good = get_config()
    bad = write(tmp_path / "bad.toml", "[flux]\nhash_keys = 1\n")
    with pytest.raises(ConfigError):
        reload_config(bad)
    assert get_config() is good


def test_failed_load_is_not_cached() -> None:
    local = write(Path.cwd() / "flux.toml", "[flux]\nnope = 1\n")
    with pytest.raises(ConfigError):
        get_config()
    prefixed(local, "fixed:")
    assert get_config().flux.key_prefix == "fixed:"


def test_get_config_loads_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = config_module.load_config
    gate = threading.Barrier(8)

    def counting_load(path: object = None) -> FluxConfig:
        calls.append(path)
        return real()

    monkeypatch.setattr(config_module, "load_config", counting_load)
    results: list[FluxConfig] = []

    def worker() -> None:
        gate.wait()
        results.append(get_config())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)
