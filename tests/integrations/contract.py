"""What every framework integration must do, written once and run against each framework.

A framework's test module subclasses :class:`Contract` (its own test client) and
:class:`ServerContract` (a real server process), providing the ``make_client`` / ``live``
fixtures. Views have the same paths and names in every test application (see apps/).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from appconfig import (
    ALGO_PERIOD,
    ALGO_QUOTA,
    BURST_QUOTA,
    GLOBAL_QUOTA,
    JITTER_MAX_MS,
    MIDDLEWARE,
    NAMED,
    PARK_QUOTA,
    PERIOD,
    QUOTA,
)
from fluxtest import (
    TRUSTED_PROXY,
    assert_denied_body,
    assert_exact_quota,
    concurrent_gets,
    expected_headers,
    rate_headers,
    twin,
)

from flux import ManualClock
from flux._flux import ALGORITHMS


@dataclass
class Reply:
    """A response from any test client, reduced to what the tests read."""

    status: int
    headers: dict[str, str]
    body: bytes

    def __post_init__(self) -> None:
        self.headers = {k.lower(): v for k, v in self.headers.items()}

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ratelimit(self) -> str | None:
        return rate_headers(self.headers).get("RateLimit")


class Client:
    """A framework's test client behind one interface."""

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        raise NotImplementedError

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers)


MakeClient = Callable[..., Client]


def statuses(client: Client, path: str, count: int, **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status for _ in range(count)]


class Contract:
    """Behaviour through the framework's own test client (manual clock: conftest.clock)."""

    def test_sync_view_is_limited_with_headers_and_body(
        self, make_client: MakeClient, clock: ManualClock
    ) -> None:
        self._limited("/sync", "sync_view", make_client(), clock)

    def test_async_view_is_limited_with_headers_and_body(
        self, make_client: MakeClient, clock: ManualClock
    ) -> None:
        self._limited("/async", "async_view", make_client(), clock)

    def _limited(self, path: str, name: str, client: Client, clock: ManualClock) -> None:
        mirror = twin("gcra", QUOTA, PERIOD, clock)
        for _ in range(QUOTA):
            reply = client.get(path)
            assert reply.status == 200
            assert rate_headers(reply.headers) == expected_headers(name, PERIOD, mirror.hit("k"))
        denied = client.get(path)
        assert denied.status == 429
        assert denied.headers["content-type"].startswith("application/json")
        assert rate_headers(denied.headers) == expected_headers(name, PERIOD, mirror.hit("k"))
        assert_denied_body(denied.json(), denied.headers)

    def test_retry_after_is_exactly_when_the_next_request_passes(
        self, make_client: MakeClient, clock: ManualClock
    ) -> None:
        client = make_client()
        assert statuses(client, "/sync", QUOTA + 1) == [200] * QUOTA + [429]
        wait = int(client.get("/sync").headers["retry-after"])
        assert wait == PERIOD // QUOTA
        clock.advance(wait - 0.001)
        assert client.get("/sync").status == 429
        clock.advance(0.001)
        assert client.get("/sync").status == 200

    def test_stacked_limits_are_all_or_nothing(
        self, make_client: MakeClient, clock: ManualClock
    ) -> None:
        client = make_client()
        hour, day = '"stacked[2/3600s]"', '"stacked[5/86400s]"'
        first = client.get("/stacked")
        assert first.ratelimit == f"{hour};r=1;t=1800, {day};r=4;t=17280"
        assert client.get("/stacked").status == 200
        for _ in range(3):
            denied = client.get("/stacked")
            assert denied.status == 429
            # The daily limit was not consumed by the requests the hourly one denied.
            assert denied.ratelimit == f"{hour};r=0;t=3600, {day};r=3;t=34560"
            assert denied.headers["retry-after"] == "1800"
        clock.advance(3600)
        again = client.get("/stacked")
        assert again.status == 200
        assert again.ratelimit == f"{hour};r=1;t=1800, {day};r=2;t=48240"

    def test_named_preset_comes_from_flux_toml(self, make_client: MakeClient) -> None:
        client = make_client()
        replies = [client.get("/named") for _ in range(5)]
        assert [r.status for r in replies] == [200, 200, 200, 200, 429]
        assert rate_headers(replies[0].headers)["RateLimit-Policy"] == f'"{NAMED}";q=4;w=3600'

    def test_header_key_counts_per_header_value(self, make_client: MakeClient) -> None:
        client = make_client()
        alice, bob = {"X-API-Key": "alice"}, {"X-API-Key": "bob"}
        assert statuses(client, "/apikey", QUOTA + 1, headers=alice) == [200] * QUOTA + [429]
        assert client.get("/apikey", headers=bob).status == 200
        # Without the header the client IP is the key: a fresh bucket, not alice's.
        assert client.get("/apikey").status == 200

    def test_user_key_counts_per_user(self, make_client: MakeClient) -> None:
        client = make_client()
        alice = {"X-User": "alice"}
        assert statuses(client, "/user", QUOTA + 1, headers=alice) == [200] * QUOTA + [429]
        assert client.get("/user", headers={"X-User": "bob"}).status == 200
        assert client.get("/user").status == 200  # anonymous: per IP

    def test_methods_limits_only_the_listed_ones(self, make_client: MakeClient) -> None:
        client = make_client()
        assert statuses(client, "/post-only", 5) == [200] * 5
        assert client.get("/post-only").ratelimit is None
        assert client.request("POST", "/post-only").status == 200
        assert client.request("POST", "/post-only").status == 429

    @pytest.mark.parametrize("policy", ALGORITHMS)
    def test_every_header_matches_the_decision(
        self, make_client: MakeClient, clock: ManualClock, policy: str
    ) -> None:
        client = make_client()
        mirror = twin(policy, ALGO_QUOTA, ALGO_PERIOD, clock)
        seen = set()
        for step in range(12):
            reply = client.get(f"/algo/{policy}")
            decision = mirror.hit("k")
            seen.add(reply.status)
            assert reply.status == (200 if decision.allowed else 429), step
            assert rate_headers(reply.headers) == expected_headers(
                f"algo_{policy}", ALGO_PERIOD, decision
            ), step
            if reply.status == 429:
                assert_denied_body(reply.json(), reply.headers)
            clock.advance(3.7 if step % 4 else 0.0)
        assert seen == {200, 429}

    def test_jitter_moves_retry_after_within_bounds(
        self, make_client: MakeClient, clock: ManualClock
    ) -> None:
        client = make_client()
        assert client.get("/jitter").status == 200
        clock.advance(0.25)  # the real wait is now 3599.75 s
        waits = set()
        for _ in range(40):
            denied = client.get("/jitter")
            assert denied.status == 429
            assert_denied_body(denied.json(), denied.headers)
            waits.add(int(denied.headers["retry-after"]))
        # Never earlier than the real retry time, never later than it plus jitter_max_ms.
        assert waits == {3600, 3601}, waits
        assert max(waits) <= 3599.75 + JITTER_MAX_MS / 1000 + 1

    def test_headers_on_success_can_be_turned_off(self, make_client: MakeClient) -> None:
        client = make_client()
        allowed = client.get("/quiet")
        assert allowed.status == 200
        assert rate_headers(allowed.headers) == {}
        denied = client.get("/quiet")
        assert denied.status == 429
        assert rate_headers(denied.headers)["Retry-After"] == "3600"

    def test_rotating_forwarded_for_from_untrusted_peer_buys_nothing(
        self, make_client: MakeClient
    ) -> None:
        client = make_client(peer="127.0.0.1")
        codes = [
            client.get("/sync", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status
            for i in range(10)
        ]
        assert codes == [200] * QUOTA + [429] * (10 - QUOTA)
        forwarded = client.get("/sync", headers={"Forwarded": "for=198.51.100.200"})
        assert forwarded.status == 429

    def test_trusted_proxy_limits_the_real_client(self, make_client: MakeClient) -> None:
        client = make_client(peer=TRUSTED_PROXY)
        real = {"X-Forwarded-For": "203.0.113.5"}
        assert statuses(client, "/sync", QUOTA, headers=real) == [200] * QUOTA
        # What the client wrote left of the proxy's entry is not believed.
        spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
        assert client.get("/sync", headers=spoofed).status == 429
        assert client.get("/sync", headers=real).status == 429
        # A chain through another trusted hop (10/8) still finds the client.
        chain = {"X-Forwarded-For": "203.0.113.5, 10.1.2.3"}
        assert client.get("/sync", headers=chain).status == 429
        assert client.get("/sync", headers={"X-Forwarded-For": "203.0.113.6"}).status == 200

    # --- middleware ------------------------------------------------------------------------

    def test_middleware_global_limit(self, make_client: MakeClient) -> None:
        client = make_client(middleware=MIDDLEWARE)
        replies = [client.get("/open") for _ in range(GLOBAL_QUOTA + 1)]
        assert [r.status for r in replies] == [200] * GLOBAL_QUOTA + [429]
        assert replies[0].ratelimit == '"global_test";r=5;t=600'
        assert rate_headers(replies[-1].headers)["RateLimit-Policy"] == '"global_test";q=6;w=3600'
        assert_denied_body(replies[-1].json(), replies[-1].headers)

    def test_middleware_per_path_limit_replaces_the_default(self, make_client: MakeClient) -> None:
        client = make_client(middleware=MIDDLEWARE)
        replies = [client.get("/api/thing") for _ in range(5)]
        assert [r.status for r in replies] == [200] * 4 + [429]
        assert replies[0].ratelimit == f'"{NAMED}";r=3;t=900'
        assert client.get("/open").ratelimit == '"global_test";r=5;t=600'

    def test_middleware_exempt_paths_and_methods(self, make_client: MakeClient) -> None:
        client = make_client(middleware=MIDDLEWARE)
        for _ in range(GLOBAL_QUOTA + 2):
            reply = client.get("/ping")
            assert reply.status == 200
            assert rate_headers(reply.headers) == {}
            options = client.request("OPTIONS", "/open")
            assert options.status != 429
            assert options.ratelimit is None
        assert client.get("/open").ratelimit == '"global_test";r=5;t=600'

    def test_middleware_and_decorator_both_apply(self, make_client: MakeClient) -> None:
        client = make_client(middleware=MIDDLEWARE)
        first = client.get("/sync")
        assert first.ratelimit == '"global_test";r=5;t=600, "sync_view";r=2;t=1200'
        assert rate_headers(first.headers)["X-RateLimit-Remaining"] == "2"
        client.get("/sync")
        client.get("/sync")
        denied = client.get("/sync")
        assert denied.status == 429
        assert denied.ratelimit == '"global_test";r=3;t=1800, "sync_view";r=0;t=3600'
        assert denied.headers["retry-after"] == "1200"
        # One all-or-nothing hit: the request the view refused cost the global limit nothing,
        # so three are left for the rest of the site.
        assert statuses(client, "/open", 4) == [200, 200, 200, 429]


class PolicyContract:
    """Per-request policies (rate strings, tiers, exemptions, deduct_when, on_limited)."""

    def test_rate_string_checks_every_rate_together(self, make_client: MakeClient) -> None:
        client = make_client()
        first = client.get("/rates")
        assert first.status == 200
        # Both quotas of "2/hour; 3/day" apply and are reported.
        assert first.ratelimit is not None and first.ratelimit.count(";r=") == 2
        assert statuses(client, "/rates", 2) == [200, 429]

    def test_limit_chosen_per_request(self, make_client: MakeClient) -> None:
        client = make_client()
        free = {"X-User": "ann", "X-Plan": "free"}
        pro = {"X-User": "ann", "X-Plan": "pro"}
        internal = {"X-User": "ann", "X-Plan": "internal"}
        assert statuses(client, "/plan", 3, headers=free) == [200, 200, 429]
        # Each tier is its own bucket: pro's 4/hour are whole after free ran out.
        assert statuses(client, "/plan", 5, headers=pro) == [200] * 4 + [429]
        # None: not limited, no headers.
        replies = [client.get("/plan", headers=internal) for _ in range(6)]
        assert {r.status for r in replies} == {200}
        assert replies[-1].ratelimit is None
        # Another user of the free tier has a bucket of their own.
        assert client.get("/plan", headers={"X-User": "bob"}).status == 200

    def test_exempt_when_is_not_limited_and_not_counted(self, make_client: MakeClient) -> None:
        client = make_client()
        assert statuses(client, "/internal", 6, headers={"X-Internal": "yes"}) == [200] * 6
        assert statuses(client, "/internal", QUOTA + 1) == [200] * QUOTA + [429]

    def test_exempt_ips_after_trusted_proxies(self, make_client: MakeClient) -> None:
        exempt = {"X-Forwarded-For": "203.0.113.9"}
        via_proxy = make_client(peer=TRUSTED_PROXY)
        assert statuses(via_proxy, "/exempt-ip", 3, headers=exempt) == [200] * 3
        # The same header from an untrusted peer claims nothing: it is limited.
        spoofer = make_client(peer="127.0.0.1")
        assert statuses(spoofer, "/exempt-ip", 2, headers=exempt) == [200, 429]

    def test_deduct_when_counts_only_failures(self, make_client: MakeClient) -> None:
        client = make_client()
        right = {"X-Password": "right"}
        assert statuses(client, "/login", 8, headers=right) == [200] * 8
        assert statuses(client, "/login", QUOTA + 1) == [401] * QUOTA + [429]
        # Once refused, even the right password waits: the hit is taken before the view.
        assert client.get("/login", headers=right).status == 429

    def test_on_limited_answers_with_headers(self, make_client: MakeClient) -> None:
        client = make_client()
        assert client.get("/custom").status == 200
        denied = client.get("/custom")
        assert denied.status == 429
        assert denied.json() == {"custom": True}
        assert int(denied.headers["retry-after"]) > 0
        assert denied.ratelimit is not None

    def test_middleware_policies(self, make_client: MakeClient) -> None:
        options = {
            "default": "2/hour",
            "exempt_when": lambda r: r.headers.get("X-Internal") == "yes",
            "deduct_when": lambda r: r.status_code >= 400,
        }
        client = make_client(middleware=options)
        assert statuses(client, "/open", 4, headers={"X-Internal": "yes"}) == [200] * 4
        # Successful responses are given back: /open never runs out.
        assert statuses(client, "/open", 5) == [200] * 5
        # Failures (404) count: two, then refused.
        assert statuses(client, "/missing", 3) == [404, 404, 429]


class ServerContract:
    """Behaviour under a real server process (one worker: the embedded store is per process).

    Limits are an hour long and nothing waits for them: the server has no manual clock.
    """

    def test_concurrent_clients_get_exactly_the_quota(self, live: str) -> None:
        responses = concurrent_gets(f"{live}/burst", 40)
        assert_exact_quota(responses, BURST_QUOTA, "burst")

    def test_deduct_when_stays_exact_under_concurrency(self, live: str) -> None:
        # 20 concurrent failed logins against 3 per hour: exactly 3 reach the view.
        failures = concurrent_gets(f"{live}/login", 20)
        assert sorted(r.status_code for r in failures) == [401] * QUOTA + [429] * (20 - QUOTA)

    def test_concurrent_clients_on_an_async_view_get_exactly_the_quota(self, live: str) -> None:
        responses = concurrent_gets(f"{live}/burst-async", 40)
        assert_exact_quota(responses, BURST_QUOTA, "burst_async")

    def test_rotating_forwarded_for_from_untrusted_peer_buys_nothing(self, live: str) -> None:
        spoofs = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(12)]
        responses = concurrent_gets(f"{live}/sync", 12, headers=spoofs)
        assert sorted(r.status_code for r in responses) == [200] * QUOTA + [429] * (12 - QUOTA)

    def test_trusted_proxy_limits_the_real_client(self, live: str) -> None:
        real = [{"X-Forwarded-For": "203.0.113.50"}] * 8
        responses = concurrent_gets(f"{live}/async", 8, headers=real, local_address=TRUSTED_PROXY)
        assert sorted(r.status_code for r in responses) == [200] * QUOTA + [429] * (8 - QUOTA)
        other = concurrent_gets(
            f"{live}/async",
            1,
            headers=[{"X-Forwarded-For": "203.0.113.51"}],
            local_address=TRUSTED_PROXY,
        )
        assert other[0].status_code == 200


class AsyncServerContract:
    """ASGI servers: allowed requests parked inside an async view do not stall the loop."""

    def test_async_view_under_load_does_not_block_the_loop(self, live: str) -> None:
        with ThreadPoolExecutor(PARK_QUOTA) as pool:
            parked = [
                pool.submit(httpx.get, f"{live}/parked", timeout=30) for _ in range(PARK_QUOTA)
            ]
            try:
                _wait_until_parked(live, PARK_QUOTA)
                # The quota is used up by requests still in flight: more are denied at once,
                # and an unrelated endpoint answers, while the loop holds the parked ones.
                extra = [httpx.get(f"{live}/parked", timeout=5) for _ in range(3)]
                assert [r.status_code for r in extra] == [429] * 3
                assert httpx.get(f"{live}/ping", timeout=5).status_code == 200
            finally:
                httpx.post(f"{live}/release", timeout=5)
            assert [f.result().status_code for f in parked] == [200] * PARK_QUOTA


def _wait_until_parked(live: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{live}/parked-count", timeout=5).json()["count"] < count:
        if time.monotonic() > deadline:
            raise AssertionError("the parked requests never reached the view")
        time.sleep(0.01)  # waiting for requests in flight, not for a rate limit
