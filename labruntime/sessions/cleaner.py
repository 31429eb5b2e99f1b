"""The cleaner thread: ends sessions whose slot is over or that stopped polling.

It runs one pass (:meth:`~.manager.SessionManager.clean`, through the lab's state) whenever a
session is due, blocking until then (at most WEBLAB_CLEANER_INTERVAL seconds), and backs off
while Redis is unavailable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from labruntime.errors import StoreUnavailableError

__all__ = ["CleanerThread"]

log = logging.getLogger(__name__)


class CleanerThread(threading.Thread):
    """Runs ``run_pass`` whenever a session is due (at most every ``interval`` seconds)."""

    def __init__(
        self, run_pass: Callable[[], object], next_due: Callable[[], float | None], interval: float
    ) -> None:
        super().__init__(name="labruntime-cleaner", daemon=True)
        self._run_pass = run_pass
        self._next_due = next_due
        self._interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                self._run_pass()
                due = self._next_due()
                wait = self._interval if due is None else min(self._interval, due - time.time())
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
