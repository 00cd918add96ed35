"""A TCP proxy on loopback that delays every byte sent upstream by a fixed time.

It models a Redis that is ``delay`` further away: each round trip takes ``delay`` longer, but
requests are not serialised (data read at t is forwarded at t + delay, whatever else is in
flight), so pipelined or concurrent requests overlap exactly as they would over a long link.
Replies come back undelayed.

Run as a program (``python delay_proxy.py UPSTREAM_PORT DELAY_MS``) it prints the port it
listens on and serves until killed; :class:`DelayProxy` does that in a subprocess, so the proxy
never competes with the process under test for its GIL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import deque

__all__ = ["DelayProxy"]


async def _pump_delayed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    queue: deque[tuple[float, bytes]] = deque()
    ready = asyncio.Event()
    done = False

    async def forward() -> None:
        while True:
            while not queue:
                if done:
                    writer.close()
                    return
                ready.clear()
                await ready.wait()
            due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)

    task = asyncio.ensure_future(forward())
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            queue.append((time.monotonic() + delay, data))
            ready.set()
    except OSError:
        pass
    done = True
    ready.set()
    await task


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    writer.close()


async def _serve(upstream_port: int, delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump_delayed(client_r, up_w, delay), _pump(up_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


class DelayProxy:
    """The proxy in a subprocess: ``port`` reaches Redis on ``upstream_port`` ``delay_ms`` later."""

    def __init__(self, upstream_port: int, delay_ms: float) -> None:
        """Start the proxy and wait for its port."""
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(upstream_port), str(delay_ms)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError("the delay proxy did not start")
        self.port = int(line)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<proxy port>``."""
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Kills the proxy (by PID)."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2]) / 1000))
