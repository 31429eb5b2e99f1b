"""The cleaner thread: ends sessions whose slot is over or that stopped polling.

It runs one pass (:meth:`~.manager.SessionManager.clean`, through the lab's state) whenever a
session is due, blocking until then (at most WEBLAB_CLEANER_INTERVAL seconds), and backs off
while Redis is unavailable.

With ``lead`` (the web processes' cleaners), one cleaner per lab runs passes: the one holding
the lab's cleaner lease in Redis (LEASE seconds, renewed by its passes when RENEW seconds have
gone by since the last renewal, and never later than LEASE / 2). The others look once when the
leader's lease could lapse (one round trip), so a dead leader is replaced within LEASE
seconds; a leader that stops gives the lease up.

With ``defer`` (a ``loop`` worker's cleaner), it runs passes only while no web process leads
(``defer()`` says how long the leader's lease still runs: 0, none), without taking the lease,
and otherwise looks again DEFER_LOOK seconds later (one round trip): with the web processes
up, an idle worker's cleaner wakes 3 times a minute instead of every WEBLAB_CLEANER_INTERVAL;
with them all down, it takes up the sessions' ends within DEFER_LOOK seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from labruntime.errors import StoreUnavailableError

__all__ = ["DEFER_LOOK", "LEASE", "RENEW", "CleanerThread"]

log = logging.getLogger(__name__)

LEASE = 10.0  # seconds the lab's cleaner lease lasts: a dead leader is replaced within it
RENEW = LEASE / 3  # a leader's pass renews the lease once this long has passed since the last
DEFER_LOOK = 2 * LEASE  # seconds between a deferring cleaner's looks while a web process leads


class CleanerThread(threading.Thread):
    """Runs ``run_pass`` whenever a session is due (at most every ``interval`` seconds)."""

    def __init__(
        self,
        run_pass: Callable[[], object],
        next_due: Callable[[], float | None],
        interval: float,
        lead: Callable[[float], float | None] | None = None,
        release: Callable[[], object] | None = None,
        defer: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name="labruntime-cleaner", daemon=True)
        self._run_pass = run_pass
        self._next_due = next_due
        self._interval = interval
        self._lead = lead  # lead(LEASE): None when this cleaner leads, else seconds to wait
        self._release = release
        self._defer = defer  # defer(): seconds left on a web leader's lease (0: nobody leads)
        self.renewed: float | None = None  # monotonic time of the last renewal, while leading
        self.stopping = threading.Event()

    def _follow(self) -> float | None:
        """None: this cleaner leads (lease taken or renewed when due); else how long to wait
        before looking again (when the leader's lease could lapse)."""
        if self._lead is None:
            if self._defer is not None and self._defer() > 0:
                return DEFER_LOOK  # a web process cleans: look again later, no pass
            return None
        now = time.monotonic()
        if self.renewed is not None and now - self.renewed < RENEW:
            return None
        left = self._lead(LEASE)
        self.renewed = now if left is None else None
        return None if left is None else min(left, LEASE) + 0.05

    def run(self) -> None:
        try:
            self._loop()
        finally:
            if self.renewed is not None and self._release is not None:
                try:
                    self._release()
                except Exception:  # noqa: BLE001 - Redis down: the lease lapses by itself
                    log.debug("cleaner: cannot give the lease up", exc_info=True)

    def _loop(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                follow = self._follow()
                if follow is not None:
                    self.stopping.wait(follow)
                    continue
                self._run_pass()
                due = self._next_due()
                wait = self._interval if due is None else min(self._interval, due - time.time())
                if self.renewed is not None:  # renewed before the lease could lapse
                    wait = min(wait, self.renewed + LEASE / 2 - time.monotonic())
                backoff = 1.0
            except StoreUnavailableError as error:
                log.warning("cleaner: %s; retrying in %.0f s", error, backoff)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            except Exception:
                log.exception("cleaner pass failed; retrying in %.0f s", self._interval)
                wait = self._interval
            self.stopping.wait(max(0.05, wait))

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (bounded)."""
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
