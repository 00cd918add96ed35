"""Who is asking: the client identity a rate limit counts against.

The default identity is the client IP address, taken from the **socket peer**. Proxy headers
(``X-Forwarded-For``, or RFC 7239 ``Forwarded``) are read only when that peer is one of
``[flux] trusted_proxies``, and then walked right to left past every trusted hop: the first
address that is not a trusted proxy is the client. Entries further left were written by the
client itself and are never believed, so rotating a spoofed header buys nothing.

Only one of the two headers is read (``X-Forwarded-For`` by default): a proxy that writes one of
them passes the other through untouched, so believing both would let a client pick its identity.

``key`` specs (the ``key`` argument of :func:`flux.rate_limit` and of the middlewares):

- ``None`` or ``"ip"``: ``ip:<client ip>`` (IPv6 optionally grouped by ``ipv6_prefix``);
- ``"user"``: ``user:<authenticated user id>``, else the client IP;
- ``"header:<Name>"``: ``header:<Name>:<value>``, else the client IP;
- a callable: called with the request (or with no argument, if it takes none); its result as a
  string, or the client IP when it returns ``None``;
- any other string: itself, a constant (one bucket shared by every client).

``get_ip`` and ``generate_identity`` keep flux-limiter 0.1.19's names and call shapes.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from flux._signatures import positional_arity
from flux.config import FORWARDED, FORWARDED_HEADERS, X_FORWARDED_FOR, FluxConfig, get_config

# Finding the request's framework is the step before identity (docs/architecture.md, "One
# hit"): flux-limiter's get_ip and generate_identity take a bare request.
from flux.integrations import integration_for
from flux.integrations._common import DUCK, Integration

__all__ = [
    "FORWARDED",
    "X_FORWARDED_FOR",
    "Identifier",
    "KeySpec",
    "client_ip",
    "generate_identity",
    "get_ip",
    "group_ipv6",
    "hash_identity",
    "normalize_ip",
    "parse_forwarded",
    "parse_x_forwarded_for",
]

KEY_IP = "ip"
KEY_USER = "user"
KEY_HEADER = "header:"
# Identity of calls that carry no request (plain functions): one bucket per limit.
NO_REQUEST = "global"
UNKNOWN_PEER = "unknown"
# 128 bits of sha256: collisions are out of reach, and keys stay short.
HASH_HEX_CHARS = 32

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
KeySpec = Union[str, Callable[..., Any], None]


def normalize_ip(text: str | None) -> Address | None:
    """The address in ``text`` (ports, brackets and quotes stripped), or ``None``.

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) become IPv4, so one client has one key
    whichever socket family it arrived on.
    """
    return _parse_ip(text) if text else None


# Parsing is most of the cost of an identity, and the same peers come back again and again.
@functools.lru_cache(maxsize=8192)
def _parse_ip(text: str) -> Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:443" or "[2001:db8::1]"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_x_forwarded_for(value: str | None) -> list[str]:
    """The entries of an ``X-Forwarded-For`` value, left (origin) to right (nearest hop)."""
    if not value:
        return []
    return [entry.strip() for entry in value.split(",")]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_forwarded(value: str | None) -> list[str]:
    """The ``for=`` node of each element of an RFC 7239 ``Forwarded`` value, left to right.

    An element without ``for=`` gives ``""`` (an unknown hop), so the chain keeps its length.
    """
    if not value:
        return []
    nodes = []
    for element in _split_outside_quotes(value, ","):
        node = ""
        for pair in _split_outside_quotes(element, ";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                node = raw.strip().strip('"').replace('\\"', '"')
        nodes.append(node)
    return nodes


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    # `address in network` is simply False across IP versions.
    return any(address in network for network in trusted)


def client_ip(peer: str | None, chain: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address, given the socket ``peer`` and the forwarding ``chain`` (left to right).

    The chain is used only when the peer is trusted; it is walked from the right past trusted
    hops. An unparseable entry ends the walk at the last hop known good (the proxy that wrote
    it); when every hop is trusted, the leftmost is the client. A peer that is not an IP
    address (a Unix socket, a test client's name) is returned as it is.
    """
    address = normalize_ip(peer)
    if address is None:
        return peer or UNKNOWN_PEER
    if not trusted or not _trusted(address, trusted):
        return _text(address)
    for entry in reversed(chain):
        hop = normalize_ip(entry)
        if hop is None:
            break
        address = hop
        if not _trusted(hop, trusted):
            break
    return _text(address)


# str(IPv6Address) is slow enough to matter per request; addresses hash cheaply.
_text = functools.lru_cache(maxsize=8192)(str)


def group_ipv6(ip: str, prefix: int | None) -> str:
    """``ip`` itself, or for an IPv6 address its ``/prefix`` network (``2001:db8::/64``).

    One IPv6 host usually holds a whole /64: grouping stops a client from rotating addresses
    inside its own network to get fresh buckets.
    """
    if prefix is None or prefix >= 128 or ":" not in ip:
        return ip
    try:
        network = ipaddress.IPv6Network(f"{ip}/{prefix}", strict=False)
    except ValueError:
        return ip
    return str(network)


def hash_identity(identity: str) -> str:
    """A digest of ``identity`` (sha256, first 128 bits in hex): no IP or user id is stored."""
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX_CHARS]


def _check_prefix(prefix: int | None) -> int | None:
    if prefix is None:
        return None
    if isinstance(prefix, bool) or not isinstance(prefix, int) or not 1 <= prefix <= 128:
        raise ValueError(f"ipv6_prefix must be an int from 1 to 128, got {prefix!r}")
    return prefix


def _check_forwarded_header(name: str) -> str:
    for known in FORWARDED_HEADERS:
        if name.lower() == known.lower():
            return known
    raise ValueError(f"forwarded_header must be one of {FORWARDED_HEADERS}, got {name!r}")


@functools.lru_cache(maxsize=8192)
def _peer_ip(peer: str | None, ipv6_prefix: int | None) -> str:
    """The client IP when no proxy is trusted: the peer's address (IPv6 grouped)."""
    return group_ipv6(client_ip(peer, (), ()), ipv6_prefix)


_KINDS = (KEY_IP, KEY_USER, KEY_HEADER.rstrip(":"))


def _normalised_key(key: KeySpec) -> KeySpec:
    """``key`` with its kind spelt canonically (``"IP"`` is ``"ip"``, ``"Header:X-K"`` is
    ``"header:X-K"``); a constant that looks like a misspelt kind is refused.

    A constant key puts every client in one bucket, so one client exhausts the limit for all:
    a typo (``"usr"``) must not silently mean that. A deliberate constant that resembles a
    kind can be given as a callable (``key=lambda request: "usr"``).
    """
    if not isinstance(key, str):
        return key
    bare = key.strip()
    lowered = bare.lower()
    if lowered in (KEY_IP, KEY_USER):
        return lowered
    if lowered.startswith(KEY_HEADER):
        return KEY_HEADER + bare[len(KEY_HEADER) :]
    if not bare:
        raise ValueError(
            "key must not be empty: use None (the client IP), 'ip', 'user', "
            "'header:<Name>', a callable or a constant name"
        )
    head = lowered.split(":", 1)[0]
    near = difflib.get_close_matches(head, _KINDS, n=1, cutoff=0.6)
    if near or head.startswith("header"):
        kind = near[0] if near else "header"
        spelt = "header:<Name>" if kind == "header" else kind
        raise ValueError(
            f"key {key!r} looks like a misspelt {spelt!r}: as a constant it would put every "
            f"client in one bucket. Use key={spelt!r}, or key=lambda request: {key!r} for a "
            "deliberate constant"
        )
    return key


@functools.lru_cache(maxsize=8192)
def _peer_identity(ipv6_prefix: int | None, hashed: bool, peer: str | None) -> str:
    """The default ``ip:<client>`` identity when no proxy is trusted (digested if ``hashed``).

    Parsing and formatting an address costs about a microsecond; the same peers come back
    request after request, so the answer is cached by the peer text.
    """
    identity = f"ip:{_peer_ip(peer, ipv6_prefix)}"
    return hash_identity(identity) if hashed else identity


class Identifier:
    """Turns a request into the identity a limit counts against, following a ``key`` spec.

    Built once (at decoration or middleware set-up time); calling it is the per-request part.
    Proxy and IPv6 settings come from the arguments, defaulting to ``config`` (the process-wide
    flux.toml when ``None``).
    """

    spec: KeySpec
    trusted_proxies: tuple[Network, ...]
    forwarded_header: str
    ipv6_prefix: int | None
    hash_keys: bool

    def __init__(
        self,
        key: KeySpec = None,
        *,
        config: FluxConfig | None = None,
        trusted_proxies: Iterable[Network | str] | None = None,
        forwarded_header: str | None = None,
        ipv6_prefix: int | None = None,
        hash_keys: bool | None = None,
    ) -> None:
        """Validate ``key`` and settle the proxy, IPv6 and hashing settings."""
        config = config if config is not None else get_config()
        settings = config.flux
        if trusted_proxies is None:
            trusted_proxies = settings.trusted_proxies
        self.trusted_proxies = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n
            for n in trusted_proxies
        )
        # Proposed [flux] keys; read when config.py has them, so no code changes then.
        if forwarded_header is None:
            forwarded_header = getattr(settings, "forwarded_header", None) or X_FORWARDED_FOR
        self.forwarded_header = _check_forwarded_header(forwarded_header)
        if ipv6_prefix is None:
            ipv6_prefix = getattr(settings, "ipv6_prefix", None)
        self.ipv6_prefix = _check_prefix(ipv6_prefix)
        self.hash_keys = settings.hash_keys if hash_keys is None else hash_keys
        key = _normalised_key(key)
        self.spec = key
        self._header: str | None = None
        self._arity: int | None = None
        #: The identity is a function of the socket peer alone (see :attr:`of_peer`).
        self.peer_only = (key is None or key == KEY_IP) and not self.trusted_proxies
        #: ``of_peer(peer)``: the identity of a request from socket ``peer`` when
        #: :attr:`peer_only`; cached by the peer text, and a C-level call (no Python frame).
        self.of_peer: Callable[[str | None], str] = functools.partial(
            _peer_identity, self.ipv6_prefix, self.hash_keys
        )
        if isinstance(key, str):
            if key.startswith(KEY_HEADER):
                self._header = key[len(KEY_HEADER) :].strip()
                if not self._header:
                    raise ValueError('key "header:<Name>" needs a header name')
        elif callable(key):
            self._arity = positional_arity(key)
        elif key is not None:
            raise TypeError(
                "key must be None, 'ip', 'user', 'header:<Name>', a callable or a string, "
                f"got {type(key).__name__}"
            )

    def ip(self, integration: Integration, request: Any) -> str:
        """The client IP of ``request`` (trusted proxies honoured, IPv6 grouped)."""
        if not self.trusted_proxies:
            return _peer_ip(integration.peer(request), self.ipv6_prefix)
        return group_ipv6(self.address(integration, request), self.ipv6_prefix)

    def address(self, integration: Integration, request: Any) -> str:
        """The client address of ``request``, trusted proxies honoured, never grouped."""
        peer = integration.peer(request)
        if not self.trusted_proxies:
            return client_ip(peer, (), ())
        value = integration.header(request, self.forwarded_header)
        if self.forwarded_header == FORWARDED:
            chain = parse_forwarded(value)
        else:
            chain = parse_x_forwarded_for(value)
        return client_ip(peer, chain, self.trusted_proxies)

    def __call__(
        self,
        integration: Integration | None,
        request: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The identity for one call: ``request`` (with its ``integration``), or, for a plain
        function call, its ``args``/``kwargs`` (given to a callable key)."""
        if self.peer_only and integration is not None:
            return self.of_peer(integration.peer(request))
        identity = self._identity(integration, request, args, kwargs or {})
        return hash_identity(identity) if self.hash_keys else identity

    def _identity(
        self,
        integration: Integration | None,
        request: Any,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> str:
        spec = self.spec
        if callable(spec):
            value = self._call_key(spec, integration, request, args, kwargs)
            # None or "" means "no identity here": fall back to the client address, never to
            # one bucket shared by every client.
            if value is not None and value != "":
                return str(value)
        elif spec is not None and spec != KEY_IP:
            if spec == KEY_USER:
                user = integration.user_id(request) if integration is not None else None
                if user is not None and str(user) != "":
                    return f"user:{user}"
            elif self._header is not None:
                value = integration.header(request, self._header) if integration else None
                if value:
                    return f"header:{self._header}:{value}"
            else:
                return spec
        if integration is None:
            return NO_REQUEST
        return f"ip:{self.ip(integration, request)}"

    def _call_key(
        self,
        key: Callable[..., Any],
        integration: Integration | None,
        request: Any,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> Any:
        if self._arity == 0:
            return key()
        if integration is not None:
            return key(request)
        # A plain function: the key sees the same arguments as the function.
        if self._arity is None or args or kwargs:
            return key(*args, **kwargs)
        return key(None)


# --- flux-limiter 0.1.19 names ----------------------------------------------------------------


def get_ip(
    request: Any,
    *,
    config: FluxConfig | None = None,
    trusted_proxies: Iterable[Network | str] | None = None,
    forwarded_header: str | None = None,
    ipv6_prefix: int | None = None,
) -> str:
    """The client IP of a Django, DRF, Starlette/FastAPI or Flask request (flux-limiter name).

    Unlike flux-limiter, ``X-Forwarded-For`` is believed only from ``trusted_proxies`` and is
    walked from the right, so a client cannot choose its own address. Unknown request types
    are read by duck typing (``client.host``, ``remote_addr``, ``META["REMOTE_ADDR"]``);
    ``"0.0.0.0"`` when nothing is found, as flux-limiter did.
    """
    identifier = Identifier(
        config=config,
        trusted_proxies=trusted_proxies,
        forwarded_header=forwarded_header,
        ipv6_prefix=ipv6_prefix,
        hash_keys=False,
    )
    integration = integration_for(request)
    if integration is None:
        integration = DUCK
    ip = identifier.ip(integration, request)
    return "0.0.0.0" if ip == UNKNOWN_PEER else ip


def generate_identity(request: Any, key_func: KeySpec = None, prefix: str = "") -> str:
    """``prefix`` + the identity of ``request`` under ``key_func`` (flux-limiter name).

    ``key_func`` is any ``key`` spec; ``None`` gives ``ip:<client ip>``. The result is not
    hashed here: flux hashes only when ``[flux] hash_keys`` is set.
    """
    identifier = Identifier(key_func, hash_keys=False)
    integration = integration_for(request) if request is not None else None
    if integration is None and request is not None:
        integration = DUCK
    return f"{prefix}{identifier(integration, request)}"
