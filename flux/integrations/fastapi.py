"""Starlette and FastAPI: request reading, responses, endpoint signatures, and ASGI middleware.

Endpoints: ``@rate_limit`` goes **below** the route decorator (``@app.get`` must see the
wrapper). FastAPI endpoints need no ``request`` parameter: when one is missing, the wrapper's
``__signature__`` gains a ``Request``-typed keyword parameter, which FastAPI injects and never
puts in the OpenAPI schema, and likewise a ``Response`` parameter used to add the headers to
endpoints that return plain data. Starlette endpoints receive the request anyway.

Middleware (pure ASGI, so streaming and background tasks are untouched)::

    app.add_middleware(FluxMiddleware, default="api", exempt_paths=["/health"])

Note that uvicorn rewrites the client address from ``X-Forwarded-For`` when the peer is in its
own ``--forwarded-allow-ips`` (default ``127.0.0.1``): flux then sees what uvicorn decided.
Run uvicorn with ``--no-proxy-headers`` to let flux's ``trusted_proxies`` decide alone.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Any, Callable

from flux.integrations import FrameworkNotInstalled
from flux.integrations._check import Check
from flux.integrations._common import TOO_MANY_REQUESTS, Integration, RequestState
from flux.integrations._global import GlobalLimits
from flux.integrations._policies import alimited, asettle

try:
    from starlette.datastructures import Headers
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Match
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
    from starlette.websockets import WebSocket, WebSocketState
except ImportError as exc:  # pragma: no cover - exercised only without Starlette
    raise FrameworkNotInstalled("starlette", "fastapi") from exc

__all__ = [
    "INTEGRATION",
    "REQUEST_PARAM",
    "RESPONSE_PARAM",
    "FluxMiddleware",
    "StarletteIntegration",
    "endpoint_signature",
    "is_websocket_endpoint",
    "refuse",
    "refusing_websockets",
]

# Names of the parameters added to an endpoint's signature for FastAPI to inject.
REQUEST_PARAM = "_flux_request"
RESPONSE_PARAM = "_flux_response"
# Close code of a refused websocket handshake when the server cannot send an HTTP response.
POLICY_VIOLATION = 1008
# ASGI scope key of the middleware's RequestState (the scope is shared down to the endpoint).
STATE_KEY = "flux.state"


class StarletteIntegration(Integration):
    """Reads Starlette/FastAPI ``Request``; answers with ``JSONResponse``."""

    name = "starlette"
    raw_headers = True

    def is_request(self, obj: Any) -> bool:
        """A Starlette ``Request`` (FastAPI's is the same class) or ``WebSocket``: a websocket
        handshake is identified like an HTTP request (address, headers, ``scope["user"]``)."""
        return isinstance(obj, HTTPConnection)

    def peer(self, request: Any) -> str | None:
        """``scope["client"]`` host, as the ASGI server reports it."""
        client = request.scope.get("client")
        return str(client[0]) if client else None

    def header(self, request: Any, name: str) -> str | None:
        """The header's values joined with ``", "`` (repeated headers form one list)."""
        values = request.headers.getlist(name)
        return ", ".join(values) if values else None

    def user_id(self, request: Any) -> str | None:
        """``scope["user"]`` from ``AuthenticationMiddleware``, when authenticated."""
        user = request.scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        for attribute in ("identity", "id", "pk", "username", "display_name"):
            try:
                value = getattr(user, attribute, None)
            except NotImplementedError:  # BaseUser.identity is abstract
                continue
            if value is not None and value != "":
                return str(value)
        return None

    def method(self, request: Any) -> str:
        """``scope["method"]``."""
        return str(request.scope.get("method", "GET")).upper()

    def path(self, request: Any) -> str:
        """``scope["path"]``."""
        return str(request.scope.get("path", "/"))

    def state(self, request: Any) -> RequestState | None:
        """The middleware's state, kept in the ASGI scope."""
        return request.scope.get(STATE_KEY)

    def set_state(self, request: Any, state: RequestState) -> None:
        """Keep the middleware's state in the ASGI scope."""
        request.scope[STATE_KEY] = state

    def denied(
        self, body: dict[str, Any], headers: Mapping[str, str], status: int = TOO_MANY_REQUESTS
    ) -> JSONResponse:
        """A ``JSONResponse`` with status 429."""
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def add_headers(
        self, request: Any, response: Any, headers: Mapping[str, str], sub_response: Any = None
    ) -> Any:
        """Set the headers on a returned ``Response``, else on FastAPI's injected one."""
        target = response if isinstance(response, Response) else sub_response
        if isinstance(target, Response):
            _set_headers(target.raw_headers, headers)
        return response

    def app_limited_response(self, request: Any, error: Any) -> Any:
        """``handler(request, error)`` of the application's ``exception_handler`` for
        ``RateLimitExceeded`` (or a base flux error) or for 429; None when there is none."""
        handler = _exception_handler(request, error)
        return None if handler is None else handler(request, error)

    def run_awaitable(self, awaitable: Any) -> Any:
        """Await an async handler from a sync endpoint (which runs in anyio's threadpool)."""
        import anyio.from_thread

        async def wait() -> Any:
            return await awaitable

        return anyio.from_thread.run(wait)

    def add_header_items(
        self, request: Any, response: Any, items: list[tuple[Any, Any]], sub_response: Any = None
    ) -> Any:
        """:meth:`add_headers` for lower-cased bytes pairs."""
        target = response if isinstance(response, Response) else sub_response
        if isinstance(target, Response):
            _extend_raw(target.raw_headers, items)
        return response


def _exception_handler(request: Any, error: Any) -> Any:
    """The handler the application registered with ``exception_handler`` for flux's errors
    or for 429 (read from the application itself: a middleware runs before Starlette puts the
    handlers in the scope); None when there is none."""
    from flux.exceptions import FluxError

    handlers = getattr(request.scope.get("app"), "exception_handlers", None) or {}
    for cls in type(error).__mro__:
        if issubclass(cls, FluxError) and cls in handlers:
            return handlers[cls]
    return handlers.get(TOO_MANY_REQUESTS)


def _set_headers(raw: list[tuple[bytes, bytes]], headers: Mapping[str, str]) -> None:
    """Set ``headers`` on a raw ASGI header list, replacing any present."""
    _extend_raw(
        raw, [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    )


def _extend_raw(raw: list[tuple[bytes, bytes]], items: list[tuple[bytes, bytes]]) -> None:
    """Add lower-cased raw header ``items`` to a raw ASGI header list, replacing any present.

    MutableHeaders.__setitem__ rescans the list for every header; the usual case (none of
    them present yet: FastAPI's sub-response starts empty) is one list extend.
    """
    if raw:
        names = {name for name, _ in items}
        if any(name in names for name, _ in raw):
            raw[:] = [(k, v) for k, v in raw if k not in names]
    raw.extend(items)


INTEGRATION = StarletteIntegration()


def _resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return dict(getattr(func, "__annotations__", {}))


def _is_type(annotation: Any, cls: type, name: str) -> bool:
    if isinstance(annotation, str):  # unresolved: go by the name as written
        return annotation.rpartition(".")[2] == name
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return isinstance(annotation, type) and issubclass(annotation, cls)


def endpoint_signature(
    func: Callable[..., Any],
) -> tuple[inspect.Signature | None, str | None, str | None]:
    """The signature FastAPI should see for a wrapper of ``func``, and the parameter names.

    Returns ``(signature, request_param, response_param)``: the names FastAPI will inject the
    request and the sub-response under (the endpoint's own when it declares them), and a new
    signature when parameters had to be added (None when ``func`` already has both).
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None, None, None
    hints = _resolved_hints(func)
    socket = websocket_param(signature, hints)
    if socket is not None:
        # FastAPI injects no Request into a websocket route (and a response has no headers to
        # carry): the wrapper finds the WebSocket among the arguments instead.
        return None, socket, None
    request_param = response_param = None
    for name, param in signature.parameters.items():
        annotation = hints.get(name, param.annotation)
        if request_param is None and _is_type(annotation, HTTPConnection, "Request"):
            request_param = name
        elif response_param is None and _is_type(annotation, Response, "Response"):
            response_param = name
    added = []
    if request_param is None:
        request_param = REQUEST_PARAM
        added.append(
            inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    if response_param is None:
        response_param = RESPONSE_PARAM
        added.append(
            inspect.Parameter(RESPONSE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )
    if not added:
        return None, request_param, response_param
    params = list(signature.parameters.values())
    # Keyword-only parameters go before **kwargs, the only kind allowed after them.
    at = len(params)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    params[at:at] = added
    return signature.replace(parameters=params), request_param, response_param


class ResponseStart(typing.NamedTuple):
    """What the ASGI middleware's ``deduct_when`` sees: the response's status and headers
    (the body has not been sent yet when the hit is settled)."""

    status_code: int
    headers: Headers


def websocket_param(signature: inspect.Signature, hints: Mapping[str, Any]) -> str | None:
    """The parameter of an endpoint that receives its ``WebSocket``, if it is a websocket
    endpoint: annotated ``WebSocket``, or an unannotated one named ``websocket`` (Starlette's
    convention; its routes pass the socket positionally)."""
    for name, param in signature.parameters.items():
        annotation = hints.get(name, param.annotation)
        if annotation is inspect.Parameter.empty:
            if name == "websocket":
                return name
        elif _is_type(annotation, WebSocket, "WebSocket"):
            return name
    return None


def is_websocket_endpoint(func: Callable[..., Any]) -> bool:
    """Whether ``func`` is a coroutine function taking a ``WebSocket`` (see
    :func:`websocket_param`): ``rate_limit`` then limits its connection attempts."""
    if not inspect.iscoroutinefunction(func):
        return False
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return websocket_param(signature, _resolved_hints(func)) is not None


def _websocket_among(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> WebSocket | None:
    for value in (*args[:2], *kwargs.values()):
        if isinstance(value, WebSocket):
            return value
    return None


def refusing_websockets(limited: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``limited``, the ``rate_limit`` wrapper of a websocket endpoint, so that a denied
    connection attempt is refused before ``accept``.

    ``limited`` answers a denied call with a 429 (or 503) response instead of calling the
    endpoint; a websocket endpoint's return value is dropped by the framework, so this
    wrapper sends it: see :func:`refuse`. An allowed connection proceeds untouched.
    """

    @functools.wraps(limited)
    async def websocket_wrapper(*args: Any, **kwargs: Any) -> Any:
        answer = await limited(*args, **kwargs)
        if isinstance(answer, Response):
            socket = _websocket_among(args, kwargs)
            if socket is not None and socket.client_state is WebSocketState.CONNECTING:
                await refuse(socket, answer)
                return None
        return answer

    return websocket_wrapper


async def refuse(websocket: WebSocket, response: Any) -> None:
    """Refuse a websocket handshake with ``response`` (flux's JSON 429 and its headers).

    Where the server supports the ASGI ``websocket.http.response`` extension (uvicorn,
    Starlette's TestClient) the client gets exactly that HTTP response. Elsewhere the
    handshake is closed with code 1008 (policy violation) and the wait in the reason; such
    servers usually answer the client with a bare HTTP 403, as for any refused handshake.
    """
    denial = isinstance(response, Response)
    if denial and "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        await websocket.send_denial_response(response)
        return
    # (An on_unavailable hook may have answered with something else than a Response.)
    retry_after = response.headers.get("retry-after", "1") if denial else "1"
    reason = f"rate limited; retry after {retry_after} s"
    await websocket.close(code=POLICY_VIOLATION, reason=reason)


class FluxMiddleware:
    """ASGI middleware applying a default limit, or per-path limits, to every HTTP request
    and every websocket connection attempt.

    Takes the arguments of :class:`flux.middleware.GlobalLimits`. Denied requests get the
    same JSON 429 as decorated endpoints; allowed ones get the headers (unless a decorated
    endpoint already wrote them, including this middleware's limit). A denied websocket
    handshake is refused before ``accept`` (see :func:`refuse`); an allowed one proceeds
    untouched.
    """

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        """Build the limits once, when the application stack is built."""

        self.app = app
        self.limits = GlobalLimits(**options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check HTTP requests and websocket handshakes; pass everything else through."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request = Request(scope)
        check = await self.limits.acheck(INTEGRATION, request, _endpoint_of(scope))
        if check is None:
            await self.app(scope, receive, send)
            return
        if check.denied:
            if isinstance(check, Check):
                denied = await alimited(check, INTEGRATION, request)
            else:
                denied = check.deny(INTEGRATION)
            await denied(scope, receive, send)
            return
        state = RequestState(list(check.applied))
        INTEGRATION.set_state(request, state)
        limits = self.limits
        settles = limits.settles and isinstance(check, Check)

        async def send_with_headers(message: Message) -> None:
            if settles and message["type"] == "http.response.start":
                # deduct_when reads the status and headers: the body is not known yet.
                started = ResponseStart(message["status"], Headers(raw=message.get("headers", [])))
                await asettle(check, INTEGRATION, started)  # type: ignore[arg-type]
            if (
                message["type"] == "http.response.start"
                and not state.decorated
                and limits.headers_on_success
            ):
                raw = list(message.get("headers", []))
                _set_headers(raw, limits.headers(state.applied))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count a connection attempt; refuse it before ``accept`` when denied."""
        socket = WebSocket(scope, receive, send)
        check = await self.limits.acheck(INTEGRATION, socket, _endpoint_of(scope))
        if check is not None and check.denied:
            await refuse(socket, check.deny(INTEGRATION))
            return
        await self.app(scope, receive, send)


def _endpoint_of(scope: Scope) -> Any:
    """The endpoint the application's router will hand ``scope`` to, when a route of its own
    matches it fully (None for mounts, sub-applications and unmatched paths)."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, child = route.matches(scope)
        if match == Match.FULL:
            return child.get("endpoint")
    return None
