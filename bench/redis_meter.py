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
  sits on a unix socket between the client and the server, reads the RESP stream both ways
  and counts, per connection, each time the client sends while every command it sent before
  has been answered: a client that waits for its replies before sending again starts a new
  round trip; a pipeline is one, however large, however the kernel splits it, and even when
  the server starts answering its first commands before the last ones arrived. Only code
  whose client connects to the proxy's URL is counted, so a benchmark times its code on the
  direct URL and counts its round trips in a separate pass through the proxy.
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


def _value_end(buffer: bytes, start: int) -> int:
    """Where the RESP value (RESP2 or RESP3) at ``start`` ends, or -1 if it is incomplete.
    A line that does not start with a RESP type is an inline command (one line)."""
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return -1
    kind, head, end = buffer[start : start + 1], buffer[start + 1 : line_end], line_end + 2
    if kind in (b"$", b"=", b"!"):  # blob string, verbatim string, blob error
        size = int(head)
        if size < 0:
            return end
        return end + size + 2 if end + size + 2 <= len(buffer) else -1
    if kind in (b"*", b"~", b">", b"%", b"|"):  # array, set, push, map, attribute
        items = int(head) * (2 if kind in (b"%", b"|") else 1) + (1 if kind == b"|" else 0)
        for _ in range(max(items, 0)):
            end = _value_end(buffer, end)
            if end < 0:
                return -1
        return end
    return end  # + - : _ , # ( and inline commands: one line


def _complete_values(buffer: bytes) -> tuple[int, bytes]:
    """(how many complete values ``buffer`` starts with, what is left after them)."""
    count, position = 0, 0
    while position < len(buffer):
        end = _value_end(buffer, position)
        if end < 0:
            break
        count, position = count + 1, end
    return count, buffer[position:]


class _Pair:
    """One client connection and its upstream connection (both non-blocking), what waits to be
    written to each, and the RESP bookkeeping."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.outbox = {client: bytearray(), upstream: bytearray()}
        self.sent = b""  # the client's incomplete command
        self.received = b""  # the server's incomplete reply
        self.outstanding = 0  # commands sent, not answered yet
        self.in_trip = False

    def from_client(self, data: bytes) -> int:
        """Queue for the server; 1 if this starts a new round trip."""
        new = 0 if self.in_trip else 1
        self.in_trip = True
        commands, self.sent = _complete_values(self.sent + data)
        self.outstanding += commands
        self.outbox[self.upstream] += data
        return new

    def from_server(self, data: bytes) -> None:
        replies, self.received = _complete_values(self.received + data)
        self.outstanding = max(0, self.outstanding - replies)  # (pub/sub pushes: no command)
        if not self.outstanding and not self.sent:
            self.in_trip = False
        self.outbox[self.client] += data


def _serve_proxy(target_url: str, listen: str, control: str) -> None:
    """The proxy process: one thread, a selector over non-blocking sockets, so a client that
    writes a large pipeline before reading never waits on the proxy."""
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

    def close(pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(sock)
            sock.close()

    def flush(pair: _Pair, sock: socket.socket) -> None:
        """Write what waits for ``sock``; watch it for writing while some is left."""
        box = pair.outbox[sock]
        if box:
            with contextlib.suppress(BlockingIOError):
                del box[: sock.send(box)]
        kind = "client" if sock is pair.client else "server"
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if box else 0)
        selector.modify(sock, events, (kind, pair))

    while True:
        for key, events in selector.select():
            kind, pair = key.data
            if kind == "accept":
                client, _ = server.accept()
                upstream = socket.socket(family, socket.SOCK_STREAM)
                upstream.connect(address)
                client.setblocking(False)
                upstream.setblocking(False)
                pair = _Pair(client, upstream)
                selector.register(client, selectors.EVENT_READ, ("client", pair))
                selector.register(upstream, selectors.EVENT_READ, ("server", pair))
                continue
            if kind == "control":
                conn, _ = ctrl.accept()
                conn.sendall(f"{total}\n".encode())
                conn.close()
                continue
            sock = key.fileobj
            if sock.fileno() < 0:  # closed earlier in this round
                continue
            try:
                if events & selectors.EVENT_WRITE:
                    flush(pair, sock)  # type: ignore[arg-type]
                if events & selectors.EVENT_READ:
                    data = sock.recv(1 << 20)  # type: ignore[union-attr]
                    if not data:
                        close(pair)
                        continue
                    if kind == "client":
                        total += pair.from_client(data)
                        flush(pair, pair.upstream)
                    else:
                        pair.from_server(data)
                        flush(pair, pair.client)
            except BlockingIOError:
                continue
            except OSError:  # one side went away: close both
                close(pair)


if __name__ == "__main__":
    _serve_proxy(*sys.argv[1:4])
