"""Running one claimed task: its Flask context, its user, its result, its final state.

The task function runs inside an app context with ``weblab_user`` bound to the session's user
(time_left included) and ``current_task`` set; a task declared with devices gets them as
``current_devices``, their operations' progress as ``task.progress``, and a ``stop()`` cancels
those operations at their next safe point. Whatever happens
(an exception, a result JSON cannot carry, even SystemExit) ends as a final state in Redis,
and the runner thread lives on.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from labruntime.devices.current import DeviceMap, bind_devices
from labruntime.devices.progress import ProgressWriter
from labruntime.errors import DeviceUnavailableError
from labruntime.sessions.binding import bind_user
from labruntime.store.connection import is_store_outage
from labruntime.store.records import DONE, FAILED, TaskRecord, error_info
from labruntime.store.tasks import TaskStore

from .decorator import TaskWrapper
from .handle import RunningTask, WebLabTask, bind_running
from .service import TaskService

log = logging.getLogger(__name__)

__all__ = ["StopEvent", "run_claimed"]

FINISH_PATIENCE = 600.0  # seconds a finished task retries storing its end (Redis out)


class StopEvent(threading.Event):
    """The running task's stop flag; ``on_set`` callbacks run when it is raised."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], Any]] = []
        self._callbacks_lock = threading.Lock()

    def on_set(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when the flag is raised (at once if it already is)."""
        with self._callbacks_lock:
            self._callbacks.append(callback)
        if self.is_set():
            callback()

    def remove(self, callback: Callable[[], Any]) -> None:
        with self._callbacks_lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def set(self) -> None:
        already = self.is_set()
        super().set()
        if already:
            return
        with self._callbacks_lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a stop hook never breaks the stop
                log.exception("stop callback failed")


@contextmanager
def _devices_for(
    tasks: TaskService, wrapper: TaskWrapper, handle: WebLabTask, event: threading.Event
) -> Iterator[None]:
    """Bind current_devices, relay device progress and turn stop() into cancel_all()."""
    if not wrapper.devices:
        yield
        return
    names = list(wrapper.devices)
    holder = tasks.devices.holder
    if holder is None or any(n not in holder.devices for n in names):
        raise DeviceUnavailableError(
            f"task {wrapper.name} needs device(s) {names} that this process does not hold; "
            "it was routed here by mistake (is the same WEBLAB_DEVICES loaded everywhere?)"
        )
    task_store = tasks.store
    writer = ProgressWriter(
        lambda value: task_store.set_progress(handle.task_id, json.dumps(value))
    )

    def cancel() -> None:
        holder.cancel(names, f"task {wrapper.name} was stopped")

    with holder.using(names, handle.session_id) as devices:
        holder.observe(names, writer, event)
        if isinstance(event, StopEvent):
            event.on_set(cancel)
        try:
            with bind_devices(DeviceMap(devices, wrapper.name)):
                yield
        finally:
            if isinstance(event, StopEvent):
                event.remove(cancel)
            holder.unobserve(names, writer, event)
            writer.close()


def _call(
    tasks: TaskService,
    wrapper: TaskWrapper,
    record: TaskRecord,
    handle: WebLabTask,
    event: threading.Event,
) -> Any:
    with tasks.app.app_context(), bind_running(RunningTask(handle, event)):
        user = tasks.user_for(record.session_id)
        with bind_user(user), _devices_for(tasks, wrapper, handle, event):
            return wrapper.func(*record.args, **record.kwargs)


def _cancelled(exc: BaseException) -> bool:
    """True for a device operation cancelled at a safe point (the device layer's error)."""
    errors = sys.modules.get("labruntime.drivers.errors")
    return errors is not None and isinstance(exc, errors.OperationCancelled)


def run_claimed(
    tasks: TaskService, record: TaskRecord, stop_event: threading.Event, worker_id: str
) -> str:
    """Run a task this worker claimed and store how it ended. Returns the final status."""
    task_store = tasks.store
    handle = WebLabTask(task_store, record)
    status, result_json, error = FAILED, "", None
    wrapper = tasks.registry.get(record.name)
    if wrapper is None:
        error = error_info(
            "not-found",
            "LookupError",
            f"no task named {record.name!r} in this process: is the same app loaded here?",
        )
    else:
        try:
            result = _call(tasks, wrapper, record, handle, stop_event)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the task's error
            if _cancelled(exc):  # stop(), a dispose or safe(): not a crash of the task
                log.info("task %s (%s) stopped: %s", record.name, record.task_id, exc)
                error = error_info("stopped", type(exc).__name__, str(exc))
            else:
                log.exception("task %s (%s) raised", record.name, record.task_id)
                error = error_info("exception", type(exc).__name__, str(exc))
        else:
            try:
                result_json = json.dumps(result, allow_nan=False)
                status = DONE
            except (TypeError, ValueError) as exc:
                log.error("task %s (%s) returned a non-JSON result", record.name, record.task_id)
                error = error_info(
                    "result-not-json",
                    type(exc).__name__,
                    f"the task returned {type(result).__name__}, which JSON cannot carry "
                    f"({exc}); return str, int, float, bool, None, list or dict",
                )
    try:
        data_json = json.dumps(record.data, allow_nan=False)
    except (TypeError, ValueError):
        log.error("task %s (%s): current_task.data is not JSON", record.name, record.task_id)
        data_json = ""
    _store_end(task_store, record, worker_id, status, result_json, error, data_json)
    return status


def _store_end(
    task_store: TaskStore,
    record: TaskRecord,
    worker_id: str,
    status: str,
    result_json: str,
    error: dict[str, str] | None,
    data_json: str,
) -> None:
    """Store the task's end, retrying while Redis is unavailable (an outage, a full disk) for
    up to FINISH_PATIENCE seconds: the worker stays alive meanwhile, so the result is kept."""
    deadline = time.monotonic() + FINISH_PATIENCE
    pause = 0.2
    while True:
        try:
            task_store.finish(
                record.task_id,
                status,
                worker_id=worker_id,
                result_json=result_json,
                error=error,
                data_json=data_json,
            )
            return
        except Exception as exc:  # noqa: BLE001 - Redis restarting: retry until the deadline
            if not is_store_outage(exc):
                log.exception(
                    "task %s (%s): its end could not be stored", record.name, record.task_id
                )
                return
            if time.monotonic() + pause > deadline:
                log.error(
                    "task %s (%s): its end (%s) could not be stored in %g s: %s",
                    record.name,
                    record.task_id,
                    status,
                    FINISH_PATIENCE,
                    exc,
                )
                return
            task_store.outage.failed(f"storing the end of task {record.task_id}", exc)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
