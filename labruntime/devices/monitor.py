"""The serial monitor, holder side: what a held board prints goes to Redis for its student.

In the process holding the devices (:class:`~.holder.DeviceHolder`), a :class:`ConsoleMonitor`
watches every device that is a Console:

- a device that pushes its output (``add_output_listener``: ``sim:avr``, whose UART the
  simulator delivers as the program prints) is only listened to: its own ``read()`` keeps
  working for tasks;
- any other Console (``serial:``) has nobody reading it between tasks, so a reader thread
  reads it while no task uses it (the holder's per-device lock, taken for at most
  ``IDLE_READ`` s at a time and never while a task waits for it). A task that reads the port
  itself gets what arrives during the task; that text is not mirrored.

The text goes to the device's stream (:class:`~labruntime.store.monitor.MonitorStore`) tagged
with the session that owns the board now: the session whose task used it last
(:meth:`ConsoleMonitor.claim`, called by the holder when a task has taken the device). Output
with no owner (before the first task, after a dispose) goes nowhere. At the end of a session
(:meth:`ConsoleMonitor.end_session`, called where the holder drives the device safe for that
session) the owner is cleared and an ``end`` entry tells the student's page to stop.

Writes are batched: one XADD per device at most every ``FLUSH_DELAY`` s; a flood beyond
``MAX_PENDING`` characters between two flushes keeps the newest text and says how much was
dropped.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from labruntime.drivers import Console, DriverError
from labruntime.store.monitor import MonitorStore

__all__ = ["ConsoleMonitor", "FLUSH_DELAY", "IDLE_READ", "MAX_PENDING"]

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.05  # seconds text waits to be batched into one write
IDLE_READ = 0.1  # seconds the reader thread holds an idle serial device per read (at most)
MAX_PENDING = 64 * 1024  # characters kept per device between two flushes
OWNER_WAIT = 1.0  # seconds the reader thread waits for an owner before looking again
ERROR_PAUSE = 1.0  # seconds the reader thread waits after a failed read
STOPPED_NOTE = "\n[serial monitor: the process holding the board stopped]\n"


@dataclass
class _Feed:
    """One watched device: its owner, the decoder, what waits to be written."""

    name: str
    owner: str | None = None
    users: int = 0  # tasks using or waiting for the device now (the reader stays away)
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    pending: list[tuple[str, str, str]] = field(default_factory=list)  # (session, kind, text)
    size: int = 0
    dropped: int = 0  # characters dropped from pending (a flood)
    ownerless: int = 0  # bytes printed while nobody owned the device


class ConsoleMonitor:
    """The serial monitor of one device holder (see the module docstring)."""

    def __init__(self, store: MonitorStore | None, names: list[str] | None = None) -> None:
        self.store = store
        self.names = set(names or ())  # the devices the lab monitors (serial_monitor(app))
        self._feeds: dict[str, _Feed] = {}
        self._cond = threading.Condition()
        self._publish_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # the reader threads
        self._detach: list[Any] = []
        self._failing = False  # the last write failed (Redis down): said once

    @property
    def watched(self) -> list[str]:
        """The names of the devices whose output is monitored."""
        return sorted(self._feeds)

    def ownerless_bytes(self, name: str) -> int:
        """Bytes ``name`` printed while no session owned it (dropped, never shown)."""
        with self._cond:
            feed = self._feeds.get(name)
            return feed.ownerless if feed is not None else 0

    # -- devices -----------------------------------------------------------------------------
    def attach(self, name: str, device: Any, lock: threading.Lock) -> bool:
        """Watch ``device`` (held as ``name``; ``lock`` is the holder's lock of it). False when
        the lab does not monitor it, it is no Console, or there is no store."""
        if self.store is None or name not in self.names or self._closed.is_set():
            return False
        add = getattr(device, "add_output_listener", None)
        if callable(add):
            listener = lambda data: self._output(name, data)  # noqa: E731
            add(listener)
            remove = getattr(device, "remove_output_listener", None)
            if callable(remove):
                self._detach.append(lambda: remove(listener))
        elif isinstance(device, Console):
            thread = threading.Thread(
                target=self._read_loop,
                args=(name, device, lock),
                name=f"weblab-monitor-{name}",
                daemon=True,
            )
            self._threads.append(thread)
        else:
            return False
        with self._cond:
            self._feeds[name] = _Feed(name)
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="weblab-monitor", daemon=True
            )
            self._flusher.start()
        for thread in self._threads:
            if thread.ident is None:
                thread.start()
        log.info("serial monitor: watching %s", name)
        return True

    # -- sessions ----------------------------------------------------------------------------
    def reserve(self, name: str) -> None:
        """A task is about to take ``name`` (it waits for the holder's lock): the reader
        thread takes the lock no more until :meth:`release`."""
        with self._cond:
            feed = self._feeds.get(name)
            if feed is not None:
                feed.users += 1

    def claim(self, name: str, session_id: str | None) -> None:
        """A task of ``session_id`` holds ``name`` now: its output goes to that session (the
        previous owner's task, if any, has ended: the holder's lock is taken)."""
        with self._cond:
            feed = self._feeds.get(name)
            if feed is None:
                return
            if feed.owner != session_id:
                self._decode(feed, b"", final=True)
                feed.owner = session_id
                if session_id:
                    log.info("serial monitor: %s prints for a new session now", name)

    def release(self, name: str) -> None:
        """The task that reserved ``name`` ended (the owner stays until its dispose)."""
        with self._cond:
            feed = self._feeds.get(name)
            if feed is not None:
                feed.users = max(0, feed.users - 1)
                self._cond.notify_all()

    def end_session(self, name: str, session_id: str | None, reason: str) -> None:
        """``session_id`` ended: its page stops; the board prints for nobody until the next
        task. Written at once (dispose waits for it)."""
        if not session_id:
            return
        with self._cond:
            feed = self._feeds.get(name)
            if feed is None:
                return
            if feed.owner == session_id:
                self._decode(feed, b"", final=True)
                feed.owner = None
            feed.pending.append((session_id, "end", reason))
        self.flush()

    # -- output ------------------------------------------------------------------------------
    def _output(self, name: str, data: bytes) -> None:
        with self._cond:
            feed = self._feeds.get(name)
            if feed is None or not data:
                return
            if feed.owner is None:
                feed.ownerless += len(data)
                return
            if self._decode(feed, data):
                self._cond.notify_all()

    def _decode(self, feed: _Feed, data: bytes, final: bool = False) -> bool:
        """Add ``data`` to the owner's pending text (lock held). True if text was added."""
        text = feed.decoder.decode(data, final)
        if final:
            feed.decoder.reset()
        if not text or feed.owner is None:
            return False
        if feed.pending and feed.pending[-1][:2] == (feed.owner, "out"):
            feed.pending[-1] = (feed.owner, "out", feed.pending[-1][2] + text)
        else:
            feed.pending.append((feed.owner, "out", text))
        feed.size += len(text)
        if feed.size > MAX_PENDING:
            self._trim(feed)
        return True

    def _trim(self, feed: _Feed) -> None:
        """Keep the newest MAX_PENDING characters of the owner's text (lock held)."""
        session, _, text = feed.pending[-1]
        cut = len(text) - MAX_PENDING
        if cut > 0:
            feed.dropped += cut
            feed.pending[-1] = (session, "out", text[cut:])
        feed.size = len(feed.pending[-1][2])

    def _take(self) -> list[tuple[str, str, str, str]]:
        """Everything pending, as (device, session, kind, text) (lock held)."""
        batch: list[tuple[str, str, str, str]] = []
        for feed in self._feeds.values():
            if feed.dropped and feed.owner is not None:
                note = f"\n[serial monitor: {feed.dropped} characters dropped (too fast)]\n"
                batch.append((feed.name, feed.owner, "out", note))
                feed.dropped = 0
            batch += [(feed.name, *entry) for entry in feed.pending]
            feed.pending.clear()
            feed.size = 0
        return batch

    def flush(self) -> None:
        """Write what is pending now (in order, one entry per session and kind)."""
        with self._publish_lock:
            with self._cond:
                batch = self._take()
            for name, session, kind, text in batch:
                try:
                    assert self.store is not None
                    self.store.publish(name, session, kind, text)
                except Exception as error:  # noqa: BLE001 - a monitor never breaks the device
                    if not self._failing:  # once per outage, not 20 times a second
                        log.warning("serial monitor: %s's output is lost: %s", name, error)
                    self._failing = True
                else:
                    if self._failing:
                        log.info("serial monitor: writing %s's output again", name)
                    self._failing = False

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed.is_set() or any(f.pending for f in self._feeds.values()),
                    timeout=OWNER_WAIT,
                )
            if not self._closed.is_set():
                self._closed.wait(FLUSH_DELAY)  # batch what follows in the next few ms
            self.flush()

    def _idle(self, feed: _Feed) -> bool:
        """The reader may read: no task uses or waits for the device (lock held). It reads
        with no owner too: that output is dropped, as the twin's is, so bytes a board sent
        before a session never reach that session's student."""
        return self._closed.is_set() or not feed.users

    def _read_loop(self, name: str, device: Any, lock: threading.Lock) -> None:
        """Read an idle Console that nobody else reads (a serial port)."""
        while not self._closed.is_set():
            with self._cond:
                feed = self._feeds.get(name)
                if feed is None:
                    return
                idle = self._cond.wait_for(partial(self._idle, feed), timeout=OWNER_WAIT)
            if not idle or self._closed.is_set():
                continue
            if not lock.acquire(timeout=IDLE_READ):
                continue
            try:
                data = device.readline(timeout=IDLE_READ)  # a line as soon as it ends
            except DriverError as error:
                data = b""
                log.debug("serial monitor: reading %s: %s", name, error)
                self._closed.wait(ERROR_PAUSE)
            finally:
                lock.release()
            if data:
                self._output(name, data)

    # -- closing -----------------------------------------------------------------------------
    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending, stop the threads (each joined with ``timeout``)."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, *([self._flusher] if self._flusher else [])]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        for detach in self._detach:
            detach()
        with self._cond:
            for feed in self._feeds.values():
                if feed.owner is not None:
                    self._decode(feed, b"", final=True)
                    feed.pending.append((feed.owner, "out", STOPPED_NOTE))
                    feed.owner = None
        self.flush()
