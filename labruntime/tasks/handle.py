"""The task handle (:class:`WebLabTask`) and the task this thread runs (:class:`RunningTask`).

Inside a running task, ``current_task`` (:mod:`labruntime.globals`) is its handle and
``current_task_stopping`` turns true once someone calls ``stop()``: the runner keeps a local
Event set by its stop listener (pub/sub), so reading the flag in a tight loop costs no Redis
round trip.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import ImmutableDict

from labruntime.errors import TimeoutError, WebLabError
from labruntime.store.records import TaskRecord
from labruntime.store.tasks import TaskStore

log = logging.getLogger(__name__)

__all__ = [
    "RunningTask",
    "TaskArgumentError",
    "WebLabTask",
    "bind_running",
    "new_task_id",
    "running_task",
    "to_json",
]

JOIN_TICK = 1.0  # seconds between liveness checks of a joined task's worker


class TaskArgumentError(WebLabError, TypeError):
    """A task argument that JSON cannot carry was given to ``.delay()``."""


@dataclass
class RunningTask:
    """What a runner thread knows about the task it runs (see :data:`current_task`)."""

    handle: WebLabTask
    stop_event: threading.Event


_running: ContextVar[RunningTask | None] = ContextVar("labruntime_task", default=None)


def running_task() -> RunningTask | None:
    """The task this thread runs, or None."""
    return _running.get()


@contextmanager
def bind_running(ctx: RunningTask) -> Iterator[RunningTask]:
    """Make ``current_task`` be ``ctx.handle`` in this block (the runner uses it)."""
    token = _running.set(ctx)
    try:
        yield ctx
    finally:
        _running.reset(token)


def to_json(value: Any, what: str) -> str:
    """JSON text of ``value``; TaskArgumentError naming ``what`` if JSON cannot carry it."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TaskArgumentError(
            f"{what} cannot be sent to a task: {error}. Task arguments must be JSON "
            "(str, int, float, bool, None, list, dict with str keys); pass an id or a path "
            "instead of the object"
        ) from error


def new_task_id() -> str:
    return secrets.token_urlsafe(24)


class WebLabTask:
    """A handle on one task. Get it from ``.delay()``, ``weblab.get_task()``, ``weblab.tasks``.

    Status goes ``submitted`` -> ``running`` -> ``done`` (see :attr:`result`) or ``failed``
    (see :attr:`error`). Attributes reflect the last read: call :meth:`retrieve` to refresh.
    """

    def __init__(self, task_store: TaskStore, record: TaskRecord) -> None:
        self._store = task_store
        self._record = record

    def _is_current(self) -> bool:
        ctx = _running.get()
        return bool(ctx and ctx.handle.task_id == self.task_id)

    @property
    def task_id(self) -> str:
        return self._record.task_id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def session_id(self) -> str | None:
        return self._record.session_id

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def submitted(self) -> bool:
        return self.status == "submitted"

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    @property
    def result(self) -> Any:
        return self._record.result

    @property
    def error(self) -> dict[str, str] | None:
        return self._record.error

    @property
    def stopping(self) -> bool:
        ctx = _running.get()
        if ctx is not None and ctx.handle.task_id == self.task_id:
            return ctx.stop_event.is_set()
        return self._record.stopping

    @property
    def progress(self) -> dict[str, Any] | None:
        """The last progress of a device operation of this task, or None.

        ``{"stage": "write", "done": 12288, "total": 30720, "fraction": 0.4, "updated": t}``
        (``updated``: a Unix time). Written at most 10 times a second while the task runs;
        call :meth:`retrieve` to refresh it.
        """
        return self._record.progress

    @property
    def data(self) -> dict[str, Any]:
        """Inside the task: a dict to fill (then :meth:`store`). Outside: a read-only copy."""
        if self._is_current():
            return self._record.data
        return ImmutableDict(self._record.data)

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        if not self._is_current():
            raise ValueError("task data can only be set from inside the task itself")
        self._record.data = value

    def store(self) -> WebLabTask:
        """Save :attr:`data` (only from inside the task)."""
        if not self._is_current():
            raise ValueError(
                "store() works only inside the task itself; outside, call retrieve() to read"
            )
        self._store.store_data(self.task_id, to_json(self._record.data, "current_task.data"))
        return self

    def update_data(self, new_data: dict[str, Any]) -> WebLabTask:
        """``data = new_data`` then ``store()`` (the seed library's older spelling)."""
        self.data = new_data
        return self.store()

    def retrieve(self) -> WebLabTask:
        """Read the task again (status, result, data...). Keeps the last state if it expired."""
        if self._is_current():
            return self
        record = self._store.get(self.task_id)
        if record is not None:
            self._record = record
        return self

    def stop(self) -> None:
        """Raise the ``stopping`` flag. A task that has not started yet still runs, as in
        weblablib, with ``current_task_stopping`` true from its start (its cleanup code runs;
        its device operations are cancelled at their first safe point), and ends as it returns
        (``done`` with its result). A session's dispose fails such tasks instead."""
        self._store.stop(self.task_id)
        self.retrieve()

    def join(self, timeout: float | None = None, error_on_timeout: bool = True) -> WebLabTask:
        """Wait until the task is done or failed (at most ``timeout`` seconds).

        Raises TimeoutError past the deadline when ``error_on_timeout``, RuntimeError when
        called from inside this same task (it would wait for itself forever).
        """
        if self._is_current():
            raise RuntimeError(  # "Deadlock": weblablib's phrase
                f"Deadlock detected: task {self.name} ({self.task_id}) called join() on itself; "
                "a task cannot wait for its own end"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.retrieve()
            if self.finished:
                return self
            remaining = JOIN_TICK if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                if error_on_timeout:
                    raise TimeoutError(
                        f"task {self.name} ({self.task_id}) still {self.status} after "
                        f"{timeout} s; join(timeout=...) longer, or stop() it"
                    )
                return self
            if not self._store.wait_final(self.task_id, min(remaining, JOIN_TICK)):
                worker = self._record.worker
                if worker and not self._store.worker_alive(worker):
                    self._store.reap(worker)

    def __repr__(self) -> str:
        return f"<WebLabTask {self.name} {self.task_id} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebLabTask) and other.task_id == self.task_id

    def __lt__(self, other: WebLabTask) -> bool:
        return self.task_id < other.task_id

    def __hash__(self) -> int:
        return hash(("weblabtask", self.task_id))
