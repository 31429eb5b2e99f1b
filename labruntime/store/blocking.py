"""Blocking Redis commands whose timeout ends on time, whatever the server's ``hz``.

Redis (6.2 at least) notices that a blocking command (BLPOP, BLMOVE, XREAD BLOCK) timed out
only when its event loop next wakes up: at the next tick of its timer (``hz`` ticks a second;
the embedded server runs at ``hz 1`` to cost little at rest, see :mod:`.embedded`) or as soon
as any client sends it something. A 0.3 s BLPOP with nothing to pop may so last up to
0.3 + 1/hz seconds.

:func:`call` sends the command, waits for its reply on this side until the deadline, then
sends a PING on the same connection: reading it wakes the server, which ends the timed-out
command at once (and answers the PING after it). A reply that comes before the deadline costs
nothing more; a wait that times out costs one more round trip and ends within a few
milliseconds of its deadline, as it would with the server's timer at any ``hz``.

For the waits a caller times (``task.join(timeout)``, a dispose waiting for tasks or for a
device holder's reply, the serial monitor's reads). The runners' long takes and a device
holder's control loop block without it: their timeouts only bound how long they may wait
(stop() wakes them), so ending 1/hz s late costs nothing.
"""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["NUDGE_AFTER", "NUDGES", "call"]

# seconds past the deadline before the first PING: the server counts the timeout from the
# moment it read the command, a little after this side sent it
NUDGE_AFTER = 0.002
NUDGES = 6  # PINGs at most (2, 4, 8, ... ms apart), then the server's own timer ends the wait


def call(client: redis.Redis, timeout: float, *args: Any) -> Any:
    """``client.execute_command(*args)`` (parsed as redis-py parses it) for a blocking command
    whose own timeout is ``timeout`` seconds: returns within milliseconds of that timeout if
    nothing answers it before (see the module docstring)."""
    pool = client.connection_pool
    connection = _connection(pool)
    try:
        return connection.retry.call_with_retry(
            lambda: _exchange(client, connection, timeout, args),
            lambda _error: connection.disconnect(),
        )
    finally:
        pool.release(connection)


def _connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3: the command's name was required (and unused)
        return pool.get_connection("_")


def _exchange(client: redis.Redis, connection: Any, timeout: float, args: tuple[Any, ...]) -> Any:
    nudges = 0
    try:
        connection.send_command(*args)
        wait = max(timeout, 0.0) + NUDGE_AFTER
        while nudges < NUDGES and not connection.can_read(timeout=wait):
            # nothing yet at the deadline: wake the server, which then times the command out
            connection.send_command("PING", check_health=False)
            nudges += 1
            wait = NUDGE_AFTER * 2**nudges
        reply = client.parse_response(connection, str(args[0]).upper())
        for _ in range(nudges):
            connection.read_response()  # the PINGs' PONGs, answered after the command
    except BaseException:
        connection.disconnect()  # never back to the pool with a reply or a PONG pending
        raise
    return reply
