"""``python -m flux clear``: delete flux's keys from Redis, or lift one client's block by hand.

::

    python -m flux clear                          # every key under [flux] key_prefix
    python -m flux clear --keep-analytics         # rate limit state only
    python -m flux clear --analytics-only         # analytics only (counters, stream)
    python -m flux clear --identity ip:10.0.0.7   # one client, every limit
    python -m flux clear --identity ip:10.0.0.7 --limit login
    python -m flux clear --dry-run ...            # list what would go, delete nothing

Keys are found with ``SCAN MATCH`` (never ``KEYS``, which blocks Redis) and removed with
``UNLINK`` (freed in the background), in batches. Redis comes from ``--redis URL`` or
flux.toml (``--config``); ``--prefix`` replaces ``[flux] key_prefix``.

With ``storage = "shared"`` (and no ``--redis``) it puts every key of the shared-memory region
back to full capacity instead, for every process that uses it; one identity cannot be picked
out there (the region holds keys as seeded hashes, not names), nor can its analytics totals
be deleted (each process keeps its own running totals in them).

An identity is given as analytics shows it (``ip:10.0.0.7``, a user id, or a digest when
``hash_keys`` is on); a bare IP address also matches ``ip:<address>``, and with ``hash_keys``
the digest of what was given matches too. With the embedded store, limit state lives inside
each application process: reset it there with ``RateLimiter.reset(key)``.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "clear_keys",
    "clear_shared",
    "find_identity_keys",
    "glob_escape",
    "main",
    "reset_identity",
]

BATCH = 500


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _scan(client: Any, pattern: str) -> Iterator[str]:
    yield from client.scan_iter(match=pattern, count=1000)


def _batches(keys: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unlink(client: Any, keys: list[str], cluster: bool) -> int:
    if not keys:
        return 0
    if cluster:
        # Keys of one UNLINK must share a slot on a cluster: one command per key, pipelined.
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in pipe.execute())
    return int(client.unlink(*keys))


def _is_analytics(key: str, stream: str | None) -> bool:
    return stream is not None and (key == stream or key.startswith(stream + ":"))


def clear_keys(
    client: Any,
    prefix: str,
    *,
    stream: str | None = None,
    keep_analytics: bool = False,
    analytics_only: bool = False,
    dry_run: bool = False,
    cluster: bool = False,
) -> list[str]:
    """Delete every key starting with ``prefix``; returns the keys (deleted, or found when
    ``dry_run``). ``stream`` names the analytics stream, whose keys ``keep_analytics`` spares
    and ``analytics_only`` restricts the deletion to. An empty prefix is refused."""
    if not prefix:
        raise ValueError("refusing an empty prefix: it would delete every key in the database")
    if keep_analytics and analytics_only:
        raise ValueError("keep_analytics and analytics_only exclude each other")

    def wanted(key: str) -> bool:
        analytics = _is_analytics(key, stream)
        return analytics if analytics_only else not (keep_analytics and analytics)

    found: list[str] = []
    patterns = [glob_escape(prefix) + "*"]
    if stream is not None and not stream.startswith(prefix) and not keep_analytics:
        # Analytics keys outside the prefix (a custom stream name) belong to flux too.
        patterns += [glob_escape(stream), glob_escape(stream) + ":*"]
    seen: set[str] = set()
    for pattern in patterns:
        keys = (k for k in _scan(client, pattern) if k not in seen and wanted(k))
        for batch in _batches(keys):
            seen.update(batch)
            found.extend(batch)
            if not dry_run:
                _unlink(client, batch, cluster)
    return found


def _identities(identity: str, hash_keys: bool) -> list[str]:
    """The forms ``identity`` may take in a key: as given, ``ip:<it>`` for a bare address,
    and their digests when ``hash_keys``."""
    forms = [identity]
    try:
        ipaddress.ip_address(identity)
    except ValueError:
        pass
    else:
        forms.append(f"ip:{identity}")
    if hash_keys:
        from flux.identity import hash_identity  # the digest the request path stores

        forms += [hash_identity(form) for form in list(forms)]
    return list(dict.fromkeys(forms))


def _names_limit(head: str, key_prefix: str, limit: str) -> bool:
    """Whether a key's part before the identity tag is ``limit``'s (as a whole segment)."""
    own = f"{limit}:"
    return head == key_prefix + own or head.endswith(key_prefix + own) or head.endswith(":" + own)


def find_identity_keys(
    client: Any,
    key_prefix: str,
    identity: str,
    *,
    limit: str | None = None,
    hash_keys: bool = False,
) -> list[str]:
    """Keys holding ``identity``'s state (under ``limit`` only, when given).

    Redis keys are ``<key_prefix><limit>:{<identity>}:<algorithm>`` (the identity is the hash
    tag: docs/architecture.md, "Names and keys"); the limit part is matched as a suffix,
    whatever prefix the store adds.
    """
    found: list[str] = []
    for form in _identities(identity, hash_keys):
        tag = "{" + form + "}:"
        for key in _scan(client, glob_escape(key_prefix) + "*" + glob_escape(tag) + "*"):
            head, _, _ = key.partition(tag)
            if limit is not None and not _names_limit(head, key_prefix, limit):
                continue
            if key not in found:
                found.append(key)
    return found


def reset_identity(
    client: Any,
    key_prefix: str,
    identity: str,
    *,
    limit: str | None = None,
    hash_keys: bool = False,
    dry_run: bool = False,
    cluster: bool = False,
) -> list[str]:
    """Lift ``identity``'s limits (only ``limit``, when given) by deleting its state; returns
    the keys deleted (or found, when ``dry_run``)."""
    keys = find_identity_keys(client, key_prefix, identity, limit=limit, hash_keys=hash_keys)
    if not dry_run:
        for batch in _batches(keys):
            _unlink(client, batch, cluster)
    return keys


def clear_shared(path: Path, *, dry_run: bool = False) -> int:
    """Put every key of the shared-memory region at ``path`` back to full capacity (for every
    process using it); returns how many keys it held (or holds, when ``dry_run``). A missing
    file is left missing (0): opening would create it."""
    from flux import _flux

    if not path.exists():
        return 0
    region = _flux.SharedRegion(path)
    return int(region.stats()["live"]) if dry_run else region.clear()


def _main_shared(args: argparse.Namespace, path: Path) -> int:
    """``flux clear`` on the shared-memory store (see the module's docstring)."""
    if args.identity is not None:
        print(
            f"flux clear: the shared store at {path} keeps keys as seeded hashes, so one "
            "identity cannot be found by name; reset it in a process with "
            "RateLimiter.reset(key), or clear every key with plain `flux clear`.",
            file=sys.stderr,
        )
        return 1
    if args.analytics_only:
        print(
            f"flux clear: the analytics of the shared store at {path} are the running totals "
            "of the processes that use it, which each process owns; they cannot be deleted "
            "from outside. Nothing was cleared.",
            file=sys.stderr,
        )
        return 1
    if not path.exists():
        print(f"no shared region at {path}: nothing to clear")
        return 0
    try:
        count = clear_shared(path, dry_run=args.dry_run)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    noun = "key" if count == 1 else "keys"
    if args.dry_run:
        print(f"{count} {noun} in the shared region at {path} would be cleared (dry run)")
    else:
        print(f"cleared {count} {noun} in the shared region at {path} (analytics kept)")
    return 0


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Delete flux's keys from Redis (SCAN + UNLINK), or reset one identity; with "
            'storage = "shared", clear the shared-memory region.'
        ),
    )
    parser.add_argument("-c", "--config", metavar="PATH", help="flux.toml to use")
    parser.add_argument("--redis", metavar="URL", help="Redis to clear (default: flux.toml's)")
    parser.add_argument("--prefix", help="key prefix (default: [flux] key_prefix, 'flux:')")
    parser.add_argument("--identity", help="only this client's state (lifts its blocks)")
    parser.add_argument("--limit", help="with --identity: only under this limit")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--keep-analytics", action="store_true", help="keep the analytics stream and counters"
    )
    which.add_argument(
        "--analytics-only", action="store_true", help="delete only the analytics data"
    )
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="list the keys, delete nothing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    from flux._redis_py import redis_target
    from flux._shared import region_path
    from flux.config import STORAGE_REDIS, STORAGE_SHARED, load_config
    from flux.exceptions import ConfigError

    parser = _parser("python -m flux clear")
    args = parser.parse_args(list(argv or []))
    if args.limit is not None and args.identity is None:
        parser.error("--limit goes with --identity")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.redis is None and config.storage == STORAGE_SHARED:
        return _main_shared(args, region_path(config))
    if args.redis is None and config.storage != STORAGE_REDIS:
        print(
            "flux clear: the store is the embedded one (no [redis] in flux.toml): its state "
            "lives inside each application process and goes with it; reset a key there "
            "with RateLimiter.reset(key). Give --redis URL to clear a Redis.",
            file=sys.stderr,
        )
        return 1
    target = redis_target(config, args.redis)
    cluster = target.cluster
    prefix = args.prefix if args.prefix is not None else config.flux.key_prefix
    try:
        client = target.connect()
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # A plain clear prints flux-limiter 0.1.19's progress lines too (its users' scripts read them).
    legacy = args.identity is None and not args.dry_run
    if legacy:
        print(f"Connecting to Redis at {target.redacted}...")
        print(f"Scanning for keys matching '{prefix}*'...")
    try:
        if args.identity is not None:
            keys = reset_identity(
                client,
                prefix,
                args.identity,
                limit=args.limit,
                hash_keys=config.flux.hash_keys,
                dry_run=args.dry_run,
                cluster=cluster,
            )
            what = f"holding the state of {args.identity!r}"
            if args.limit:
                what += f" under {args.limit!r}"
        else:
            keys = clear_keys(
                client,
                prefix,
                stream=config.analytics.stream,
                keep_analytics=args.keep_analytics,
                analytics_only=args.analytics_only,
                dry_run=args.dry_run,
                cluster=cluster,
            )
            what = f"under {prefix!r}"
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # redis.RedisError, OSError: unreachable, auth, ...
        print(f"error: Redis at {target.redacted}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    noun = "key" if len(keys) == 1 else "keys"
    if legacy and not keys:
        print("No keys found.")
    elif legacy:
        print(f"Found {len(keys)} keys. Deleting...")
        print("Done! Rate limit state cleared.")
    if args.dry_run:
        for key in keys:
            print(key)
        print(f"{len(keys)} {noun} {what} would be deleted (dry run)")
    elif args.identity is not None and not keys:
        print(f"no keys {what} (nothing is limiting it, or its state expired)")
    else:
        print(f"deleted {len(keys)} {noun} {what}")
    return 0
