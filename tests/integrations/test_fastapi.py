"""FastAPI: TestClient for behaviour, uvicorn (one worker) for real concurrency and proxies."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import fastapi_app
import pytest
from contract import (
    AsyncServerContract,
    Client,
    Contract,
    MakeClient,
    PolicyContract,
    Reply,
    ServerContract,
)
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.testclient import TestClient
from fluxtest import free_port, rate_headers, server

from flux import ManualClock, rate_limit
from flux.decorators import limits_of


class FastAPIClient(Client):
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        response = self.client.request(method, path, headers=dict(headers or {}))
        return Reply(response.status_code, dict(response.headers), response.content)


@pytest.fixture
def make_client() -> MakeClient:
    def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
        app = fastapi_app.create_app(middleware=middleware)
        return FastAPIClient(TestClient(app, client=(peer, 50000)))

    return make


class TestFastAPI(Contract, PolicyContract):
    """The shared contract through FastAPI's TestClient."""


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    # One worker: the embedded store lives in the process. --no-proxy-headers: uvicorn would
    # otherwise rewrite the client address itself from X-Forwarded-For sent by 127.0.0.1.
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--no-proxy-headers", "--log-level", "warning"]
    with server(argv, port) as base:
        yield base


class TestFastAPIUnderUvicorn(ServerContract, AsyncServerContract):
    """The server contract under uvicorn."""


def test_openapi_schema_is_what_the_endpoints_declare() -> None:
    schema = fastapi_app.create_app().openapi()
    paths = schema["paths"]
    item = paths["/items/{item_id}"]["get"]
    assert [p["name"] for p in item["parameters"]] == ["item_id", "q"]
    assert item["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    for path in ("/sync", "/async", "/request", "/stacked", "/user"):
        assert "parameters" not in paths[path]["get"], path
    assert "_flux" not in json.dumps(schema)


def test_items_endpoint_keeps_its_parameters_and_validation() -> None:
    client = TestClient(fastapi_app.create_app())
    assert client.get("/items/7", params={"q": "x"}).json() == {"id": 7, "q": "x"}
    assert client.get("/items/not-a-number").status_code == 422


def test_endpoint_with_its_own_request_and_response_parameters() -> None:
    client = TestClient(fastapi_app.create_app())
    reply = client.get("/request")
    assert reply.json() == {"path": "/request"}
    assert reply.headers["X-Own"] == "kept"
    assert rate_headers(reply.headers)["RateLimit"] == '"with_request";r=2;t=1200'


def test_returned_response_gets_the_headers_too() -> None:
    client = TestClient(fastapi_app.create_app())
    reply = client.get("/response")
    assert reply.json() == {"own": True}
    assert reply.headers["X-Own"] == "kept"
    assert rate_headers(reply.headers)["X-RateLimit-Remaining"] == "2"


def test_stacked_decorators_collapse_into_one_wrapper() -> None:
    app = fastapi_app.create_app()
    route = next(r for r in app.routes if getattr(r, "path", None) == "/stacked")
    assert [d.limiter.requests for d in limits_of(route.endpoint)] == [2, 5]


def test_dependencies_and_background_tasks_still_work(clock: ManualClock) -> None:
    app = FastAPI()
    ran = []

    def dependency() -> str:
        return "dep"

    @app.post("/work")
    @rate_limit(requests=1, period=60)
    async def work(tasks: BackgroundTasks, value: str = Depends(dependency)) -> dict[str, str]:
        tasks.add_task(ran.append, value)
        return {"value": value}

    client = TestClient(app)
    assert client.post("/work").json() == {"value": "dep"}
    assert ran == ["dep"]
    assert client.post("/work").status_code == 429
    assert ran == ["dep"]
