"""The serial monitor's lines in Redis: one capped stream per device.

Key layout (``P`` is the lab's prefix, ``B:``)::

    P monitor:<device>   stream, capped near MAXLEN entries, expiring STREAM_TTL s after the
                         last write. Each entry: ``s`` the session's tag (:func:`session_tag`,
                         never the session id: that is the student's login link), ``k``
                         ``"out"`` (``d``: text the board printed) or ``"end"`` (``d``: why
                         the monitor of that session ended, e.g. its dispose).

The process holding the device writes (:mod:`labruntime.devices.monitor`); web processes read
with a blocking XREAD that always has a deadline, keeping only the entries of their student's
session. A capped stream, not pub/sub: a page that opens (or reconnects, with the last id it
saw) after the board printed still gets the lines of its session.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from . import blocking
from .connection import Connection, guarded

__all__ = ["MAXLEN", "MonitorEvent", "MonitorStore", "session_tag"]

MAXLEN = 2000  # entries kept per device (approximately: XADD MAXLEN ~)
STREAM_TTL = 24 * 3600  # seconds a device's stream outlives its last line
READ_COUNT = 200  # entries read per round trip


def session_tag(session_id: str) -> str:
    """The short hash of a session id stored with its lines (the id itself is a secret)."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class MonitorEvent:
    """One entry of a device's monitor stream, as a reader of one session gets it."""

    id: str  # the stream id: a reader passes the last one it saw to continue after it
    kind: str  # "out" (text the board printed) or "end" (the monitor of the session ended)
    text: str


@guarded
class MonitorStore:
    """The serial monitor's streams, on the lab's :class:`~.connection.Connection`.

    Every public method raises StoreUnavailableError when Redis cannot be reached.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _key(self, device: str) -> str:
        return self._conn.key("monitor", device)

    def publish(self, device: str, session_id: str, kind: str, text: str) -> str:
        """Append an entry for ``session_id``'s monitor of ``device``; returns its id."""
        key = self._key(device)
        pipe = self._conn.pipeline(transaction=True)
        pipe.xadd(
            key,
            {"s": session_tag(session_id), "k": kind, "d": text},
            maxlen=MAXLEN,
            approximate=True,
        )
        pipe.expire(key, STREAM_TTL)
        entry_id, _ = pipe.execute()
        return str(entry_id)

    def read(
        self, device: str, session_id: str, after: str, block: float
    ) -> tuple[str, list[MonitorEvent]]:
        """The entries of ``session_id`` after id ``after`` (``"0"``: from the oldest kept),
        blocking up to ``block`` seconds for the first one. Returns (the last id read, the
        session's events); entries of other sessions are skipped, never returned."""
        tag = session_tag(session_id)
        ms = max(1, int(block * 1000))
        command = ("XREAD", "COUNT", READ_COUNT, "BLOCK", ms, "STREAMS", self._key(device), after)
        got: Any = blocking.call(self._conn.client, ms / 1000, *command)
        events: list[MonitorEvent] = []
        for _key, entries in got or []:
            for entry_id, fields in entries:
                after = entry_id
                if fields.get("s") == tag:
                    events.append(
                        MonitorEvent(entry_id, fields.get("k", "out"), fields.get("d", ""))
                    )
        return after, events

    def last_id(self, device: str) -> str:
        """The id of the newest entry of ``device`` (``"0"`` when there is none)."""
        entries = self._conn.client.xrevrange(self._key(device), count=1)
        return str(entries[0][0]) if entries else "0"
