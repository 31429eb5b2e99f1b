"""What a block of code costs on the Redis server: CPU, commands, round trips, wall time.

Used by both sides of a side-by-side benchmark (labruntime in this venv, weblablib in
``bench/.weblablib-venv``), so it needs only ``redis`` and the standard library.

- ``server_cpu_ms``: the delta of the server's own ``INFO cpu`` (``used_cpu_sys`` +
  ``used_cpu_user``: what the redis-server process used, per-round-trip work such as reading
  the socket and parsing included, a Lua script's inner commands counted once), minus what the
  meter's own two ``INFO`` calls cost (measured on an empty block) and minus the server's idle
  rate (its timer) over the block's duration. The server must serve nobody else meanwhile.
- ``commands``: the delta of ``total_commands_processed`` (a pipeline of 500 HMGET counts
  500; a Lua script counts 1 for the EVALSHA plus the commands it runs).
- ``round_trips``: counted at the socket by :class:`CountingProxy`, a separate process that
  sits on a unix socket between the client and the server and counts, per connection, each
  burst the client sends after the server has answered (a pipeline sent in one go is one,
  whatever its size or however the kernel splits it). Only code whose client connects to the
  proxy's URL is counted, so a benchmark times its code on the direct URL and counts its round
  trips in a separate pass through the proxy.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Cost:
    server_cpu_ms: float = 0.0
    commands: float = 0.0
    wall_ms: float = 0.0


def _server_cpu_ms(info: dict) -> float:
    return (float(info["used_cpu_sys"]) + float(info["used_cpu_user"])) * 1000


class Meter:
    """INFO deltas of one Redis server around a block (see the module docstring)."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self._overhead = Cost()
        self.idle_cpu_ms_per_s = 0.0
        # the server's own rate with nothing to do (its timer), then the cost of measuring
        began, cpu = time.perf_counter(), _server_cpu_ms(self.client.info("cpu"))
        time.sleep(1.0)
        cpu2 = _server_cpu_ms(self.client.info("cpu"))
        self.idle_cpu_ms_per_s = max(0.0, cpu2 - cpu) / (time.perf_counter() - began)
        empties = []
        for _ in range(20):
            with self.measure() as empty:
                pass
            empties.append(empty)
        empties.sort(key=lambda c: c.server_cpu_ms)
        self._overhead = Cost(empties[10].server_cpu_ms, min(c.commands for c in empties))

    def close(self) -> None:
        self.client.close()

    def _snapshot(self) -> tuple[float, int]:
        info = self.client.info()  # default sections: cpu and stats in one round trip
        return _server_cpu_ms(info), int(info["total_commands_processed"])

    @contextlib.contextmanager
    def measure(self) -> Iterator[Cost]:
        cost = Cost()
        cpu, commands = self._snapshot()
        began = time.perf_counter()
        try:
            yield cost
        finally:
            cost.wall_ms = (time.perf_counter() - began) * 1000
        cpu2, commands2 = self._snapshot()
        idle = self.idle_cpu_ms_per_s * cost.wall_ms / 1000
        cost.server_cpu_ms = cpu2 - cpu - self._overhead.server_cpu_ms - idle
        cost.commands = commands2 - commands - self._overhead.commands


def ping_floor(url: str, count: int = 2000) -> dict[str, float]:
    """The physical floor of one Redis round trip on this socket: a PING's wall ms and the
    server CPU ms it costs (redis-py, same URL)."""
    meter = Meter(url)
    try:
        client = meter.client
        client.ping()
        walls = []
        with meter.measure() as cost:
            for _ in range(count):
                began = time.perf_counter()
                client.ping()
                walls.append(time.perf_counter() - began)
        walls.sort()
        return {
            "wall_ms": walls[len(walls) // 2] * 1000,
            "server_cpu_ms": cost.server_cpu_ms / count,
        }
    finally:
        meter.close()


# -- round trips at the socket ------------------------------------------------------------
def _address(url: str) -> tuple[int, object, dict[str, str]]:
    """(family, address, query) of a redis:// or unix:// URL."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    if parts.username:
        query.setdefault("username", urllib.parse.unquote(parts.username))
    if parts.password:
        query.setdefault("password", urllib.parse.unquote(parts.password))
    if parts.scheme == "unix":
        return socket.AF_UNIX, parts.path, query
    if parts.scheme == "redis":
        if parts.path.strip("/"):
            query.setdefault("db", parts.path.strip("/"))
        return socket.AF_INET, (parts.hostname or "localhost", parts.port or 6379), query
    raise ValueError(f"the counting proxy cannot reach {parts.scheme}:// (use redis or unix)")


class CountingProxy:
    """A process forwarding a unix socket to the Redis of ``url`` and counting round trips.

    ``with CountingProxy(url) as proxy: ...`` gives ``proxy.url`` (connect the code to count
    there) and ``proxy.round_trips()`` (the total so far, over every connection).
    """

    def __init__(self, url: str) -> None:
        self.target = url
        self._tmp = tempfile.TemporaryDirectory(prefix="lrproxy")
        self.listen = str(Path(self._tmp.name) / "redis.sock")
        self.control = str(Path(self._tmp.name) / "count.sock")
        _, _, query = _address(url)
        self.url = f"unix://{self.listen}" + ("?" + urllib.parse.urlencode(query) if query else "")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CountingProxy:
        self._process = subprocess.Popen(
            [sys.executable, __file__, self.target, self.listen, self.control]
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.control):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("the counting proxy did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
        self._tmp.cleanup()

    def round_trips(self) -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.control)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
        return int(data)

    @contextlib.contextmanager
    def count(self) -> Iterator[list[int]]:
        """``with proxy.count() as trips: ...``; ``trips[0]`` afterwards."""
        result = [0]
        before = self.round_trips()
        yield result
        result[0] = self.round_trips() - before


def _serve_proxy(target_url: str, listen: str, control: str) -> None:
    """The proxy process: one thread, a selector over every socket."""
    family, address, _ = _address(target_url)
    selector = selectors.DefaultSelector()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(listen)
    server.listen(128)
    server.setblocking(False)
    selector.register(server, selectors.EVENT_READ, ("accept", None))
    ctrl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctrl.bind(control + ".tmp")
    ctrl.listen(16)
    os.rename(control + ".tmp", control)  # appears once both sockets listen
    selector.register(ctrl, selectors.EVENT_READ, ("control", None))
    total = 0
    # per connection pair: [client, upstream, last direction was the client's request]
    while True:
        for key, _ in selector.select():
            kind, pair = key.data
            if kind == "accept":
                client, _ = server.accept()
                upstream = socket.socket(family, socket.SOCK_STREAM)
                upstream.connect(address)
                pair = [client, upstream, False]
                selector.register(client, selectors.EVENT_READ, ("client", pair))
                selector.register(upstream, selectors.EVENT_READ, ("server", pair))
            elif kind == "control":
                conn, _ = ctrl.accept()
                conn.sendall(f"{total}\n".encode())
                conn.close()
            else:
                source = key.fileobj
                data = source.recv(1 << 20)  # type: ignore[union-attr]
                if not data:
                    for sock in pair[:2]:
                        with contextlib.suppress(KeyError, ValueError):
                            selector.unregister(sock)
                        sock.close()
                    continue
                if kind == "client":
                    if not pair[2]:
                        total += 1
                        pair[2] = True
                    pair[1].sendall(data)
                else:
                    pair[2] = False
                    pair[0].sendall(data)


if __name__ == "__main__":
    _serve_proxy(*sys.argv[1:4])
