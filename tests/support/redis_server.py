"""Redis servers for tests and benchmarks: started here, on free loopback ports, stopped by PID.

No test depends on a Redis someone else started. ``RedisServer`` is one ``redis-server``
process (SIGKILL, restart on the same port, SIGSTOP/SIGCONT to freeze it); ``RedisCluster`` is
three masters joined by ``redis-cli --cluster create``; ``command`` speaks just enough RESP to
send a command and read the reply without a client library.

Plain module (no package): tests put ``tests/support`` on ``sys.path``, and so does the bench.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["RedisCluster", "RedisServer", "command", "free_port", "redis_available"]

SERVER = os.environ.get("REDIS_SERVER", "redis-server")
CLI = os.environ.get("REDIS_CLI", "redis-cli")


def redis_available() -> bool:
    """True when ``redis-server`` (or ``$REDIS_SERVER``) can be run."""
    return shutil.which(SERVER) is not None


def free_port(with_bus: bool = False) -> int:
    """A loopback port nobody listens on now (with ``with_bus``, port + 10000 is free too)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not with_bus:
            return port
        if port < 55_000:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10_000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port found")


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(stream) for _ in range(size)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")


def command(port: int, *args: Any, password: str | None = None, timeout: float = 5.0) -> Any:
    """Sends one command to ``127.0.0.1:port`` on a fresh connection and returns the reply.

    Errors come back as ``RuntimeError`` (the server's message).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        if password is not None:
            sock.sendall(_encode(("AUTH", password)))
            _read(stream)
        sock.sendall(_encode(args))
        return _read(stream)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"redis-server on port {port} did not start within {seconds} s")


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, killed (SIGKILL by PID) by :meth:`stop`."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        """Prepare a server on ``port`` (default: a free one) with extra arguments."""
        self.port = port if port is not None else free_port()
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix=f"flux-redis-{self.port}-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self.proc is not None, "server not running"
        return self.proc.pid

    def start(self) -> RedisServer:
        """Starts the server and waits until it accepts connections."""
        argv = [
            SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_listening(self.port, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL (as in a crash): nothing is persisted."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen server dies just as well; tidy
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """Kills the server and starts it again on the same port, empty."""
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        os.kill(self.pid, signal.SIGCONT)

    def command(self, *args: Any, password: str | None = None) -> Any:
        """One command to this server (see :func:`command`)."""
        return command(self.port, *args, password=password)

    def stop(self) -> None:
        """Kills the server and removes its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster:
    """Three masters with ``cluster-enabled yes``, joined by ``redis-cli --cluster create``."""

    def __init__(self) -> None:
        """Prepare three nodes on free ports (with free bus ports)."""
        self.nodes: list[RedisServer] = []
        for _ in range(3):
            port = free_port(with_bus=True)
            node = RedisServer(port=port)
            node.extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                os.path.join(node.dir, "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
            self.nodes.append(node)

    @property
    def addresses(self) -> list[str]:
        """The nodes as ``127.0.0.1:<port>``."""
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def start(self) -> RedisCluster:
        """Starts the nodes, creates the cluster and waits until it says ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        create = ["--cluster", "create", *self.addresses, "--cluster-replicas", "0"]
        subprocess.run(
            [CLI, *create, "--cluster-yes"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not all("cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok within 20 s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Kills every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
