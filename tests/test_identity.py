"""flux.identity: client IP behind proxies (no spoofing), key specs, hashing, IPv6 grouping."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from flux import FluxConfig
from flux.identity import (
    FORWARDED,
    Identifier,
    client_ip,
    generate_identity,
    get_ip,
    group_ipv6,
    hash_identity,
    normalize_ip,
    parse_forwarded,
    parse_x_forwarded_for,
)
from flux.integrations import find_request, integration_for
from flux.integrations._common import Integration

# Django needs settings: the same ones as the framework tests, whichever runs first.
APPS = Path(__file__).parent / "integrations" / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))
import django_site  # noqa: E402

django_site.setup()

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.1/32"))


class FakeRequest:
    """A request as the fake integration below reads it."""

    def __init__(self, peer: str | None, headers: dict[str, str] | None = None, user: Any = None):
        self.peer = peer
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.user = user


class Fake(Integration):
    name = "fake"

    def peer(self, request: Any) -> str | None:
        return request.peer

    def header(self, request: Any, name: str) -> str | None:
        return request.headers.get(name.lower())

    def user_id(self, request: Any) -> str | None:
        return request.user


FAKE = Fake()


def identify(key: Any = None, **kwargs: Any) -> Identifier:
    kwargs.setdefault("config", FluxConfig())
    return Identifier(key, **kwargs)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7:8080 ", "192.0.2.7"),
        ('"192.0.2.7"', "192.0.2.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:DB8:0::1]", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        (None, None),
        ("999.1.1.1", None),
    ],
)
def test_normalize_ip(text: str | None, address: str | None) -> None:
    found = normalize_ip(text)
    assert (str(found) if found is not None else None) == address


def test_parse_headers() -> None:
    assert parse_x_forwarded_for("1.1.1.1, 2.2.2.2,3.3.3.3") == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    assert parse_x_forwarded_for(None) == []
    value = 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", proto=https'
    assert parse_forwarded(value) == ["192.0.2.60", "[2001:db8:cafe::17]:4711", ""]
    assert parse_forwarded('for="a,b";by=x, for=unknown') == ["a,b", "unknown"]
    assert parse_forwarded("") == []


def test_untrusted_peer_never_reads_the_chain() -> None:
    assert client_ip("203.0.113.9", ["1.2.3.4"], TRUSTED) == "203.0.113.9"
    assert client_ip("203.0.113.9", ["1.2.3.4"], ()) == "203.0.113.9"


def test_trusted_peer_walks_right_to_left_past_trusted_hops() -> None:
    chain = ["6.6.6.6", "198.51.100.4", "10.0.0.2", "10.9.9.9"]
    # 10.x are trusted proxies; 198.51.100.4 is the first untrusted hop: the client.
    assert client_ip("192.0.2.1", chain, TRUSTED) == "198.51.100.4"
    assert client_ip("10.1.1.1", ["198.51.100.4"], TRUSTED) == "198.51.100.4"
    assert client_ip("10.1.1.1", [], TRUSTED) == "10.1.1.1"
    assert client_ip("10.1.1.1", ["10.2.2.2", "10.3.3.3"], TRUSTED) == "10.2.2.2"
    # Garbage from the client side of a trusted hop ends the walk at that hop.
    assert client_ip("10.1.1.1", ["1.2.3.4", "unknown", "10.2.2.2"], TRUSTED) == "10.2.2.2"


def test_peer_that_is_not_an_address() -> None:
    assert client_ip("testclient", ["1.2.3.4"], TRUSTED) == "testclient"
    assert client_ip(None, [], TRUSTED) == "unknown"
    assert client_ip("::ffff:10.1.1.1", ["198.51.100.4"], TRUSTED) == "198.51.100.4"


def test_ipv6_grouping_and_hashing() -> None:
    assert group_ipv6("2001:db8:1:2:aaaa::1", 64) == "2001:db8:1:2::/64"
    assert group_ipv6("2001:db8:1:2:aaaa::1", None) == "2001:db8:1:2:aaaa::1"
    assert group_ipv6("192.0.2.1", 64) == "192.0.2.1"
    digest = hash_identity("ip:192.0.2.1")
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert digest == hash_identity("ip:192.0.2.1") != hash_identity("ip:192.0.2.2")


def test_key_specs() -> None:
    request = FakeRequest("203.0.113.9", {"X-Api-Key": "k1"}, user="42")
    anonymous = FakeRequest("203.0.113.9")
    assert identify()(FAKE, request) == "ip:203.0.113.9"
    assert identify("ip")(FAKE, request) == "ip:203.0.113.9"
    assert identify("user")(FAKE, request) == "user:42"
    assert identify("user")(FAKE, anonymous) == "ip:203.0.113.9"
    assert identify("header:X-API-Key")(FAKE, request) == "header:X-API-Key:k1"
    assert identify("header:X-API-Key")(FAKE, anonymous) == "ip:203.0.113.9"
    assert identify(lambda r: f"tenant-{r.user}")(FAKE, request) == "tenant-42"
    assert identify(lambda r: None)(FAKE, request) == "ip:203.0.113.9"
    assert identify(lambda: "fixed")(FAKE, request) == "fixed"
    assert identify("everyone")(FAKE, request) == "everyone"


def test_key_specs_on_plain_calls() -> None:
    assert identify()(None, None) == "global"
    assert identify("user")(None, None) == "global"
    assert identify(lambda user_id: user_id)(None, None, (7,), {}) == "7"
    assert identify(lambda user_id=0: user_id)(None, None, (), {"user_id": 9}) == "9"
    assert identify(lambda request: "x" if request is None else "y")(None, None) == "x"


def test_identity_is_hashed_when_asked() -> None:
    config = FluxConfig()
    hashed_config = replace(config, flux=replace(config.flux, hash_keys=True))
    request = FakeRequest("203.0.113.9")
    assert Identifier(config=hashed_config)(FAKE, request) == hash_identity("ip:203.0.113.9")
    assert identify(hash_keys=True)(FAKE, request) == hash_identity("ip:203.0.113.9")


def test_proxy_settings() -> None:
    headers = {"X-Forwarded-For": "198.51.100.1", "Forwarded": "for=198.51.100.2"}
    request = FakeRequest("10.0.0.1", headers)
    assert identify(trusted_proxies=["10.0.0.0/8"]).ip(FAKE, request) == "198.51.100.1"
    forwarded = identify(trusted_proxies=["10.0.0.0/8"], forwarded_header="forwarded")
    assert forwarded.forwarded_header == FORWARDED
    assert forwarded.ip(FAKE, request) == "198.51.100.2"
    assert identify().ip(FAKE, request) == "10.0.0.1"  # nothing trusted by default
    config = FluxConfig()
    trusting = replace(config, flux=replace(config.flux, trusted_proxies=["10.0.0.1"]))
    assert Identifier(config=trusting).ip(FAKE, request) == "198.51.100.1"
    v6 = FakeRequest("2001:db8:1:2::99")
    assert identify(ipv6_prefix=64)(FAKE, v6) == "ip:2001:db8:1:2::/64"


@pytest.mark.parametrize(
    ("key", "kwargs", "error"),
    [
        (3, {}, TypeError),
        ("header:", {}, ValueError),
        (None, {"ipv6_prefix": 0}, ValueError),
        (None, {"ipv6_prefix": 129}, ValueError),
        (None, {"forwarded_header": "X-Real-IP"}, ValueError),
    ],
)
def test_bad_specs_fail_early(key: Any, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        identify(key, **kwargs)


# --- real framework requests -----------------------------------------------------------------


def test_get_ip_on_django_drf_starlette_flask_and_duck_requests() -> None:
    from django.test import RequestFactory
    from flask import Flask
    from rest_framework.request import Request as DrfRequest
    from starlette.requests import Request

    trusted = ["127.0.0.2"]
    django = RequestFactory().get("/", REMOTE_ADDR="127.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert get_ip(django, config=FluxConfig()) == "127.0.0.2"
    assert get_ip(django, trusted_proxies=trusted, config=FluxConfig()) == "1.2.3.4"
    assert get_ip(DrfRequest(django), trusted_proxies=trusted, config=FluxConfig()) == "1.2.3.4"

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-forwarded-for", b"5.6.7.8"), (b"x-forwarded-for", b"1.2.3.4")],
        "client": ("127.0.0.2", 1234),
    }
    assert get_ip(Request(scope), trusted_proxies=trusted, config=FluxConfig()) == "1.2.3.4"

    app = Flask(__name__)
    environ = {"REMOTE_ADDR": "127.0.0.2"}
    headers = {"X-Forwarded-For": "1.2.3.4"}
    with app.test_request_context("/", environ_base=environ, headers=headers):
        from flask import request

        assert get_ip(request._get_current_object(), config=FluxConfig()) == "127.0.0.2"

    duck = SimpleNamespace(remote_addr="192.0.2.5", headers={"X-Forwarded-For": "1.1.1.1"})
    assert get_ip(duck, config=FluxConfig()) == "192.0.2.5"
    # flux-limiter believed X-Forwarded-For when nothing else was known; flux does not.
    headers_only = SimpleNamespace(headers={"X-Forwarded-For": "1.1.1.1"})
    assert get_ip(headers_only, config=FluxConfig()) == "0.0.0.0"


def test_generate_identity() -> None:
    duck = SimpleNamespace(client=SimpleNamespace(host="192.0.2.5"))
    assert generate_identity(duck) == "ip:192.0.2.5"
    assert generate_identity(duck, lambda r: "k", prefix="api:") == "api:k"


def test_detection_by_request_type() -> None:
    from django.test import RequestFactory
    from starlette.requests import Request

    django = RequestFactory().get("/")
    starlette = Request({"type": "http", "headers": []})
    assert integration_for(django).name == "django"
    assert integration_for(starlette).name == "starlette"
    assert integration_for("not a request") is None
    assert find_request((object(), django), {}) == (integration_for(django), django)
    assert find_request((), {"request": starlette})[1] is starlette
    assert find_request((1, 2), {"x": 3}) == (None, None)


def test_detection_never_imports_a_framework() -> None:
    code = (
        "import sys\n"
        "from flux import rate_limit, FluxConfig\n"
        "@rate_limit(requests=1, period=60, config=FluxConfig())\n"
        "def f(x): return x\n"
        "f(1)\n"
        "loaded = [m for m in ('django', 'flask', 'starlette', 'fastapi', 'rest_framework')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
