"""Command line: ``python -m flux <command>`` (also ``python -m flux.cli`` and ``flux``).

``init`` and ``check`` live here. The other commands live in their own modules, listed in
:data:`COMMANDS`, and are imported only when they run, so ``init`` never pays for (or fails on)
a dashboard's dependencies. Such a module exposes ``main(argv: list[str]) -> int | None`` and
parses its own arguments (everything after the command name).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flux._flux import __version__
from flux._template import TEMPLATE
from flux.config import FluxConfig, LimitConfig, load_config
from flux.exceptions import ConfigError

__all__ = ["COMMANDS", "LazyCommand", "describe_config", "main", "register_command"]

DEFAULT_CONFIG_NAME = "flux.toml"


@dataclass(frozen=True)
class LazyCommand:
    """A subcommand implemented by ``module.main(argv)``, imported when the command runs.

    ``extra`` names the optional dependency group (``pip install 'flux-ratelimit[<extra>]'``) to
    suggest when the module imports a package that is not installed.
    """

    module: str
    help: str
    extra: str | None = None


# The one place to add a command: its name, the module whose main(argv) runs it, its help.
COMMANDS: dict[str, LazyCommand] = {
    "demo": LazyCommand("flux.demo", "run a short demonstration on the embedded store"),
    "monitor": LazyCommand("flux.monitor", "live terminal view of the analytics server", "monitor"),
    "serve": LazyCommand("flux.analytics.server", "run the analytics server (/metrics, dashboard)"),
    "clear": LazyCommand("flux.clear", "delete flux's rate limit keys from the store"),
}


def register_command(name: str, module: str, help: str, *, extra: str | None = None) -> None:
    """Add (or replace) a lazily imported command; for plugins run before :func:`main`.

    Raises ValueError for a name that ``init`` or ``check`` already use.
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in flux command")
    COMMANDS[name] = LazyCommand(module, help, extra)


def _exit_code(exc: SystemExit) -> int:
    """The integer status of a SystemExit (argparse's errors and --help raise one)."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def _prog() -> str:
    """``python -m flux`` when run as a module, else the script's name (``flux``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m flux" if name in ("__main__.py", "cli.py", "") else name


def _is_module_or_parent(missing: str | None, module: str) -> bool:
    """True when the missing module is ``module`` itself or a package containing it."""
    return missing is not None and (module == missing or module.startswith(missing + "."))


def _run_lazy(prog: str, name: str, argv: list[str]) -> int:
    """Import the command's module and run its ``main(argv)``."""
    command = COMMANDS[name]
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if _is_module_or_parent(exc.name, command.module):
            message = f"not available yet ({command.module} is missing)"
        else:
            message = f"needs the Python package {exc.name!r}"
            if command.extra:
                message += f"; install it with: pip install 'flux-ratelimit[{command.extra}]'"
        print(f"{prog} {name}: {message}", file=sys.stderr)
        return 1
    try:
        status = module.main(argv)
    except SystemExit as exc:
        return _exit_code(exc)
    return 0 if status is None else int(status)


# --- init ------------------------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    """Write the commented template; refuse to replace a file unless --force."""
    target = Path(args.path)
    if target.is_dir():
        print(
            f"error: {target} is a directory; give a file path such as "
            f"{target / DEFAULT_CONFIG_NAME}",
            file=sys.stderr,
        )
        return 1
    # flux-limiter 0.1.19's wording (scripts grep for it); errors go to stderr here.
    refusal = f"Error: '{target}' already exists. Use --force to overwrite."
    if target.exists() and not args.force:
        print(refusal, file=sys.stderr)
        return 1
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x" rather than "w" without --force: a file created meanwhile is not clobbered.
        with target.open("w" if args.force else "x", encoding="utf-8", newline="\n") as handle:
            handle.write(TEMPLATE)
    except FileExistsError:
        print(refusal, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error writing file: {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"Generated configuration file at: {target.absolute()}")
    return 0


# --- check -----------------------------------------------------------------------------------


def _limit_line(name: str, limit: LimitConfig) -> str:
    """One aligned row of the limits table."""
    return (
        f"  {name:<20} {limit.policy!s:<15} {limit.requests} per {limit.period} s, "
        f"burst {limit.burst}"
    )


def describe_config(config: FluxConfig) -> str:
    """A short human-readable summary of a loaded configuration (what ``check`` prints)."""
    source = str(config.path) if config.path is not None else "no file found: built-in defaults"
    flux = config.flux
    proxies = ", ".join(str(n) for n in flux.trusted_proxies) or "none"
    lines = [f"config: {source}", f"storage: {config.storage}"]
    if config.storage == "redis":
        redis = config.redis
        cluster = redis.cluster
        nodes = ", ".join(cluster) if isinstance(cluster, tuple) else ("yes" if cluster else "no")
        lines.append(
            f"redis: {redis.connection_url(redact=True)} (pool {redis.pool_size}, "
            f"timeout {redis.timeout_ms} ms, cluster {nodes})"
        )
    if config.storage == "shared":
        from flux._shared import region_path

        max_keys = config.shared.max_keys if config.shared.max_keys is not None else 65536
        lines.append(f"shared: {region_path(config)} (max_keys {max_keys})")
    jitter = f"up to {flux.jitter_max_ms} ms" if flux.jitter_enabled else "off"
    lines.append(
        f'flux: key_prefix "{flux.key_prefix}", fail_silently {str(flux.fail_silently).lower()}, '
        f"jitter {jitter}, trusted_proxies {proxies}, hash_keys {str(flux.hash_keys).lower()}"
    )
    analytics = config.analytics
    if analytics.enabled:
        lines.append(
            f"analytics: on, port {analytics.port}, stream {analytics.stream}, "
            f"sample_rate {analytics.sample_rate}"
        )
    else:
        lines.append("analytics: off")
    lines.append("limits:")
    lines.append(_limit_line("[rate_limit]", config.rate_limit))
    lines.extend(_limit_line(name, limit) for name, limit in config.rate_limits.items())
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    """Load and validate a configuration as the application will use it: every limit built
    as its limiter will be, and the configured Redis reached (credentials, scripts, a round
    trip). Print its summary and OK, or the reason and exit 1."""
    try:
        config = load_config(args.path)
        _build_limits(config)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe_config(config))
    if config.storage == "redis":
        problem = _reach_redis(config)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 1
    print("OK")
    return 0


def _build_limits(config: FluxConfig) -> None:
    """Build ``[rate_limit]`` and every preset as a limiter (no traffic): what the store
    itself refuses (a quota Redis's arithmetic cannot hold) fails here, named."""
    from flux.limiter import RateLimiter

    RateLimiter(config=config)
    for name in config.rate_limits:
        try:
            RateLimiter(config=config, name=name)
        except ValueError as exc:
            where = f"{config.path}: " if config.path is not None else ""
            raise ValueError(f"{where}rate_limits.{name}: {exc}") from None


def _reach_redis(config: FluxConfig) -> str | None:
    """Connect, authenticate, load the scripts and make a round trip; the reason if not."""
    from flux import ConnectionError as StoreUnavailable
    from flux._redis import shared_store

    store = shared_store(config)
    try:
        store.ping()
        loaded = store.load_scripts()
    except StoreUnavailable as exc:
        return f"redis {config.redis.connection_url(redact=True)}: {exc}"
    print(f"redis: reachable, {loaded} scripts loaded")
    return None


_BUILTIN: dict[str, Callable[[argparse.Namespace], int]] = {"init": _init, "check": _check}


def _parser(prog: str) -> argparse.ArgumentParser:
    """The top-level parser: built-in commands with their options, lazy ones for --help."""
    parser = argparse.ArgumentParser(prog=prog, description="flux rate limiter")
    # The distribution's name (what pip installs), not the import name: the two differ.
    parser.add_argument("--version", action="version", version=f"flux-ratelimit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>")
    init = commands.add_parser("init", help="write a commented flux.toml template")
    init.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_CONFIG_NAME,
        help=f"file to write (default: ./{DEFAULT_CONFIG_NAME})",
    )
    init.add_argument("-f", "--force", action="store_true", help="overwrite an existing file")
    check = commands.add_parser("check", help="validate a flux.toml and summarise it")
    check.add_argument(
        "path",
        nargs="?",
        default=None,
        help="file to check (default: the usual search: $FLUX_CONFIG, ./flux.toml, "
        "./config/flux.toml)",
    )
    for name, command in COMMANDS.items():
        # Listed for --help only: main() hands these to their module before argparse runs.
        commands.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit status (0 success, 1 failure, 2 usage)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    prog = _prog()
    if arguments and arguments[0] in COMMANDS:
        return _run_lazy(prog, arguments[0], arguments[1:])
    parser = _parser(prog)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        return _exit_code(exc)
    if args.command is None:
        parser.print_help()
        return 0
    return _BUILTIN[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
