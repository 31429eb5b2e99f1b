"""Count what a block of code costs on the Redis server: commands, round trips, server time.

Used by both sides of the session benchmark (labruntime in this venv, weblablib in
``bench/.weblablib-venv``), so it only needs ``redis``. The figures are deltas of ``INFO``:

- ``commands``: ``total_commands_processed`` (a pipeline of 500 HMGET counts 500; a Lua
  script counts 1 for the EVALSHA plus the commands it runs);
- ``round_trips``: the requests redis-py sent in this process during the block (counted at
  ``send_packed_command``: a pipeline sent at once is one, whatever its size);
- ``server_ms``: the sum of ``usec`` over ``INFO commandstats``, the time Redis spent executing
  commands (not the network, not the client).

The meter's own INFO calls are outside the counted window for round trips; for commands they
are measured once (an empty block) and subtracted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

_CONNECTION = getattr(redis.connection, "AbstractConnection", redis.connection.Connection)
_SEND = _CONNECTION.send_packed_command
_sent = {"counting": False, "count": 0}


def _counting_send(self: object, *args: object, **kwargs: object) -> object:
    if _sent["counting"]:
        _sent["count"] += 1
    return _SEND(self, *args, **kwargs)


_CONNECTION.send_packed_command = _counting_send


@dataclass
class Cost:
    commands: int = 0
    round_trips: int = 0
    server_ms: float = 0.0
    wall_ms: float = 0.0


class Meter:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._overhead = Cost()
        with self.measure() as empty:
            pass
        self._overhead = empty

    def close(self) -> None:
        self.client.close()

    def _snapshot(self) -> tuple[int, float]:
        stats = self.client.info("stats")
        commandstats = self.client.info("commandstats")
        usec = sum(v["usec"] for k, v in commandstats.items() if k != "cmdstat_info")
        return stats["total_commands_processed"], usec / 1000

    @contextlib.contextmanager
    def measure(self) -> Iterator[Cost]:
        cost = Cost()
        commands, server_ms = self._snapshot()
        _sent.update(counting=True, count=0)
        began = time.perf_counter()
        try:
            yield cost
        finally:
            cost.wall_ms = (time.perf_counter() - began) * 1000
            _sent["counting"] = False
        cost.round_trips = _sent["count"]
        commands2, server_ms2 = self._snapshot()
        cost.commands = commands2 - commands - self._overhead.commands
        cost.server_ms = server_ms2 - server_ms
