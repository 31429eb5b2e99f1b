"""Task progress from device operations: every operation on a task's devices reports to
``task.progress`` ({stage, done, total, fraction, updated}), written to Redis at most 10 times a
second (the last event is always written)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the device layer loads only when a device is used
    from labruntime.drivers import Progress

log = logging.getLogger(__name__)

__all__ = ["PROGRESS_INTERVAL", "ProgressWriter"]

PROGRESS_INTERVAL = 0.1  # seconds between progress writes (<= 10 a second)


class ProgressWriter:
    """Throttled writer of a task's progress: <= 1 write per PROGRESS_INTERVAL, last always.

    Writes happen in order, one at a time: either at once (the interval has passed) or from
    the one pending timer, which re-arms itself if a newer event arrived while it wrote.
    """

    def __init__(
        self, write: Callable[[dict[str, Any]], object], interval: float = PROGRESS_INTERVAL
    ) -> None:
        self._write = write
        self._interval = interval
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # serialises writes (order kept)
        self._last_write = -math.inf
        self._pending: dict[str, Any] | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self.writes = 0

    def __call__(self, event: Progress) -> None:
        value = {**event.to_dict(), "fraction": round(event.fraction, 4), "updated": time.time()}
        with self._lock:
            self._pending = value
            if self._timer is not None or self._arm():
                return
        self.flush()

    def _arm(self) -> bool:
        """Under ``_lock``: start the timer if the interval has not passed (True if armed)."""
        wait = self._last_write + self._interval - time.monotonic()
        if wait <= 0 or self._closed:
            return False
        self._timer = threading.Timer(wait, self._on_timer)
        self._timer.daemon = True
        self._timer.start()
        return True

    def _on_timer(self) -> None:
        self.flush()
        with self._lock:
            self._timer = None
            if self._pending is not None and not self._arm():
                now = True
            else:
                now = False
        if now:
            self.flush()

    def flush(self) -> None:
        """Write the pending value now (if any)."""
        with self._write_lock:
            with self._lock:
                value, self._pending = self._pending, None
                if value is None:
                    return
                self._last_write = time.monotonic()
                self.writes += 1
            try:
                self._write(value)
            except Exception:  # noqa: BLE001 - progress is best effort
                log.warning("cannot store task progress", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()
