"""What a web process remembers of its students' sessions, kept true by Redis itself.

A student's request needs the session's small fields (status, times, the lab's data, who the
student is). Reading them is one Redis round trip per request, about half of what a student
view costs beyond a bare Flask view. :class:`SessionCache` keeps them in the process instead,
and Redis says when to forget them: one connection per process (RESP3) asks for
``CLIENT TRACKING ON BCAST PREFIX <lab>:weblab:session:``, so Redis pushes an ``invalidate``
message naming every session key of the lab that any client changes, deletes or lets expire;
a thread reads them (it blocks in a read: nothing runs at rest) and forgets those sessions.

What a cache hit may serve, and why it is true:

- Redis sends the invalidation before it answers the client whose write caused it, so a change
  made elsewhere is forgotten here within the time the message takes to arrive (well under a
  millisecond between idle processes; like a request that was already running when the
  session ended). A change made through this process (the stores' own writes: dispose, logout,
  the lab's data) is forgotten synchronously, before the write is sent (:meth:`forget`).
- A value read from Redis is remembered only if no invalidation (of any key, or a reconnect)
  arrived between just before the read was sent and its answer (:meth:`version` /
  :meth:`put`): an answer that may already be stale is never kept.
- Entries live at most ``max_age`` seconds whatever happens (the caller's poll window), and
  nothing is served while the listening connection is down (the cache is emptied, and reads go
  to Redis until tracking is on again).

The cache is per process and per (server, lab), shared by every :class:`~.connection.
Connection` of that lab in the process (see :func:`shared_cache`), and starts on first use
(after a fork, a child starts its own).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SessionCache", "shared_cache"]

log = logging.getLogger(__name__)

SIZE = 10_000  # sessions remembered per process (a few hundred bytes each)
_RETRY = (1.0, 30.0)  # seconds before reconnecting the listener: first, at most


class SessionCache:
    """Session values remembered in this process, forgotten when Redis says they changed.

    ``connect()`` returns a new, connected redis-py connection speaking RESP3 (protocol 3);
    ``prefix`` is the key prefix of the lab's session hashes (``<base>:weblab:session:``).
    """

    def __init__(self, connect: Callable[[], Any], prefix: str, size: int = SIZE) -> None:
        self._connect = connect
        self.prefix = prefix
        self.size = size
        self._entries: dict[str, tuple[float, Any]] = {}
        self._version = 0  # raised by every invalidation, reconnect and local write
        self._lock = threading.Lock()
        self._live = False  # tracking is on and the listener reads its messages
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connection: Any = None
        self.invalidations = 0  # messages read (tests and benchmarks count them)

    # -- the request side -------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """True when hits may be served (tracking on, in this process)."""
        if self._pid != os.getpid():
            self._start()
            return False
        return self._live

    def get(self, key: str, max_age: float) -> Any | None:
        """The value remembered for ``key`` if younger than ``max_age`` seconds, else None."""
        if not self.live:
            return None
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= max_age:
            return None
        return entry[1]

    def version(self) -> int | None:
        """Take this before sending a read whose answer may be remembered (None: don't)."""
        return self._version if self.live else None

    def put(self, key: str, value: Any, version: int | None) -> None:
        """Remember ``value`` unless anything was invalidated since ``version`` was taken."""
        if version is None:
            return
        with self._lock:
            if not self._live or version != self._version:
                return
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), value)

    def forget(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` now (this process is about to change them)."""
        with self._lock:
            self._version += 1
            for key in keys:
                self._entries.pop(key, None)

    # -- the listener -----------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()  # a forked child: the parent's thread is not here
            self._entries.clear()
            self._version += 1
            self._live = False
            self._connection = None
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stopping,),
                name="labruntime-session-cache",
                daemon=True,
            )
            self._thread.start()

    def _invalidated(self, message: Any) -> None:
        keys = message[1] if isinstance(message, list | tuple) and len(message) > 1 else None
        with self._lock:
            self._version += 1
            self.invalidations += 1
            if keys is None:  # FLUSHALL/FLUSHDB: everything
                self._entries.clear()
                return
            cut = len(self.prefix)
            for key in keys:
                name = key.decode() if isinstance(key, bytes) else str(key)
                self._entries.pop(name[cut:] if name.startswith(self.prefix) else name, None)

    def _run(self, stopping: threading.Event) -> None:
        wait = _RETRY[0]
        while not stopping.is_set():
            try:
                self._listen(stopping)
                wait = _RETRY[0]
            except Exception as error:  # noqa: BLE001 - Redis down or no RESP3: reads go to Redis
                # an outage is reported by the stores' own calls; this only says why hits stop
                log.debug("session cache: %s; reads go to Redis until it listens again", error)
            finally:
                with self._lock:
                    if not stopping.is_set():
                        self._live = False
                        self._entries.clear()
                        self._version += 1
            if stopping.wait(wait):
                return
            wait = min(wait * 2, _RETRY[1])

    def _listen(self, stopping: threading.Event) -> None:
        connection = self._connect()
        try:
            parser = connection._parser  # redis-py's own client-side cache does the same
            parser.set_invalidation_push_handler(self._invalidated)
            connection.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", self.prefix)
            if str(connection.read_response()) != "OK":
                raise RuntimeError("CLIENT TRACKING was refused")
            with self._lock:
                if stopping.is_set():
                    return
                self._connection = connection
                self._entries.clear()
                self._version += 1
                self._live = True
            while not stopping.is_set():
                connection.read_response(push_request=True)  # blocks; calls _invalidated
        finally:
            with self._lock:
                if self._connection is connection:
                    self._connection = None
            connection.disconnect()

    def close(self) -> None:
        """Stop listening (the thread ends; a later use in this process starts again)."""
        with self._lock:
            self._stopping.set()
            self._live = False
            self._entries.clear()
            self._pid = None
            connection, thread = self._connection, self._thread
        if connection is not None:
            try:
                connection.disconnect()  # ends the blocking read
            except Exception:  # noqa: BLE001 - closing anyway
                log.debug("session cache: closing its connection failed", exc_info=True)
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


_shared: dict[tuple[str, str], SessionCache] = {}
_shared_lock = threading.Lock()


def shared_cache(server: str, prefix: str, connect: Callable[[], Any]) -> SessionCache:
    """The process's cache of the lab whose session keys start with ``prefix`` on
    ``server`` (its URL): every connection of that lab in the process shares it, so a write
    through one is forgotten by all."""
    with _shared_lock:
        cache = _shared.get((server, prefix))
        if cache is None:
            cache = _shared[(server, prefix)] = SessionCache(connect, prefix)
        return cache
