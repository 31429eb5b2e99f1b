"""Long device operations: progress, cancellation at safe points, critical sections, deadlines.

Each device owns one :class:`OperationTracker`. A driver wraps every long operation in
``tracker.operation(name, ...)`` and, between blocks of work, calls ``op.check()`` (a *safe
point*) and ``op.report(stage, done, total)``::

    with self.ops.operation("program", progress=progress, cancel=cancel, timeout=timeout) as op:
        for page in pages:
            op.check()                  # raises OperationCancelled / DeviceTimeoutError
            with op.critical():         # a cancel arriving here waits for the next check()
                write_page(page)
            op.report("write", done, total)

``safe()`` and session disposal call ``tracker.cancel_all()`` then ``tracker.wait_idle(t)``,
which blocks on a condition variable (no polling) until every operation has left its ``with``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import DeviceTimeoutError, OperationCancelled

__all__ = ["CancelSource", "Operation", "OperationTracker", "Progress", "ProgressCallback"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` units in ``stage`` (e.g. "write", "verify")."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        """Completion in [0, 1] (1.0 when ``total`` is 0)."""
        if self.total <= 0:
            return 1.0
        return max(0.0, min(1.0, self.done / self.total))

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "done": self.done, "total": self.total}


ProgressCallback = Callable[[Progress], Any]
#: A threading.Event (or anything with ``is_set()``) or a zero-argument callable returning bool.
CancelSource = Any


def _cancel_requested(source: CancelSource) -> bool:
    if source is None:
        return False
    is_set = getattr(source, "is_set", None)
    if callable(is_set):
        return bool(is_set())
    return bool(source())


class Operation:
    """One tracked operation. Created by :meth:`OperationTracker.operation`, not directly."""

    def __init__(
        self,
        name: str,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelSource = None,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self.started = time.monotonic()
        self.deadline: float | None = None if timeout is None else self.started + timeout
        self.timeout = timeout
        self.last_progress: Progress | None = None
        self._progress = progress
        self._cancel_source = cancel
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._reason = ""
        self._critical = 0
        self._callbacks: list[Callable[[str], Any]] = []

    # -- cancellation -----------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once ``cancel()`` was called or the external cancel source fired."""
        if not self._cancelled.is_set() and _cancel_requested(self._cancel_source):
            self.cancel("cancel requested by caller")
        return self._cancelled.is_set()

    @property
    def cancel_reason(self) -> str:
        return self._reason

    def cancel(self, reason: str = "") -> None:
        """Ask the operation to stop at its next safe point. Idempotent; thread-safe."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._reason = reason
            self._cancelled.set()
            callbacks = list(self._callbacks)
        log.info("operation %r cancelled%s", self.name, f": {reason}" if reason else "")
        for callback in callbacks:
            try:
                callback(reason)
            except Exception:
                log.exception("cancel callback of operation %r failed", self.name)

    def on_cancel(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(reason)`` when cancelled (at once if already cancelled).

        For operations that block outside Python (an external tool) and must be interrupted
        actively rather than at the next ``check()``.
        """
        with self._lock:
            if not self._cancelled.is_set():
                self._callbacks.append(callback)
                return
        callback(self._reason)

    def wait_cancelled(self, timeout: float | None) -> bool:
        """Block up to ``timeout`` seconds for a ``cancel()``; True if cancelled."""
        if self.cancelled:
            return True
        return self._cancelled.wait(timeout)

    # -- safe points ------------------------------------------------------------------------
    @property
    def in_critical(self) -> bool:
        return self._critical > 0

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A section that must not be interrupted; a cancel is deferred to the next check()."""
        with self._lock:
            self._critical += 1
        try:
            yield
        finally:
            with self._lock:
                self._critical -= 1

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def check(self) -> None:
        """A safe point: raise if cancelled or past the deadline (unless inside critical())."""
        if self.in_critical:
            return
        if self.cancelled:
            why = f": {self._reason}" if self._reason else ""
            raise OperationCancelled(f"operation {self.name!r} was cancelled{why}")
        if self.expired():
            raise DeviceTimeoutError(
                f"operation {self.name!r} ran past its deadline of {self.timeout:g} s; "
                "pass a larger timeout if the device is just slow"
            )

    # -- progress ---------------------------------------------------------------------------
    def report(self, stage: str, done: int, total: int) -> None:
        """Record progress and call the progress callback (its errors are logged, not raised)."""
        event = Progress(stage, int(done), int(total))
        self.last_progress = event
        if self._progress is None:
            return
        try:
            self._progress(event)
        except Exception:
            log.exception("progress callback of operation %r failed (ignored)", self.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for describe()."""
        return {
            "name": self.name,
            "seconds": round(time.monotonic() - self.started, 3),
            "cancelled": self._cancelled.is_set(),
            "progress": None if self.last_progress is None else self.last_progress.to_dict(),
        }

    def __repr__(self) -> str:
        return f"<Operation {self.name!r} cancelled={self._cancelled.is_set()}>"


class OperationTracker:
    """The set of in-flight operations of one device. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ops: list[Operation] = []

    @contextmanager
    def operation(
        self,
        name: str,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelSource = None,
        timeout: float | None = None,
    ) -> Iterator[Operation]:
        """Track an operation for the duration of the ``with`` block."""
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        op = Operation(name, progress=progress, cancel=cancel, timeout=timeout)
        with self._cond:
            self._ops.append(op)
        try:
            yield op
        finally:
            with self._cond:
                self._ops.remove(op)
                self._cond.notify_all()

    @property
    def in_flight(self) -> list[Operation]:
        with self._cond:
            return list(self._ops)

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._ops)

    def cancel_all(self, reason: str = "") -> int:
        """Cancel every in-flight operation; returns how many there were."""
        ops = self.in_flight
        for op in ops:
            op.cancel(reason)
        return len(ops)

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until no operation is in flight (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._ops, timeout)
