"""Running one claimed task: its Flask context, its user, its result, its final state.

The task function runs inside an app context with ``weblab_user`` bound to the session's user
(time_left included) and :data:`~labruntime.task_handle.current_task` set. Whatever happens
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

from .errors import DeviceUnavailableError
from .store.tasks import DONE, FAILED, TaskRecord, TaskStore, error_info
from .task_handle import RunningTask, WebLabTask, bind_running

log = logging.getLogger(__name__)

__all__ = ["StopEvent", "run_claimed"]

FINISH_ATTEMPTS = 5


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
    weblab: Any, app: Any, wrapper: Any, handle: WebLabTask, event: Any
) -> Iterator[None]:
    """Bind current_devices, relay device progress and turn stop() into cancel_all()."""
    if not wrapper.devices:
        yield
        return
    from .device_tasks import DeviceMap, ProgressWriter, bind_devices

    names = list(wrapper.devices)
    holder = weblab._device_holder(app)
    if holder is None or any(n not in holder.devices for n in names):
        raise DeviceUnavailableError(
            f"task {wrapper.name} needs device(s) {names} that this process does not hold; "
            "it was routed here by mistake (is the same WEBLAB_DEVICES loaded everywhere?)"
        )
    task_store = handle._store
    writer = ProgressWriter(
        lambda value: task_store.set_progress(handle.task_id, json.dumps(value))
    )

    def cancel() -> None:
        holder.cancel(names, f"task {wrapper.name} was stopped")

    with holder.using(names, handle.session_id) as devices:
        for device in devices.values():
            device.ops.add_listener(writer)
            device.ops.add_cancel_source(event)
        if isinstance(event, StopEvent):
            event.on_set(cancel)
        try:
            with bind_devices(DeviceMap(devices, wrapper.name)):
                yield
        finally:
            if isinstance(event, StopEvent):
                event.remove(cancel)
            for device in devices.values():
                device.ops.remove_listener(writer)
                device.ops.remove_cancel_source(event)
            writer.close()


def _call(weblab: Any, app: Any, record: TaskRecord, handle: WebLabTask, event: Any) -> Any:
    from .globals import bind_user

    wrapper = weblab._task_functions[record.name]
    with app.app_context(), bind_running(RunningTask(handle, event)):
        user = weblab._load_task_user(record.session_id)
        with bind_user(user), _devices_for(weblab, app, wrapper, handle, event):
            return wrapper.func(*record.args, **record.kwargs)


def _cancelled(exc: BaseException) -> bool:
    """True for a device operation cancelled at a safe point (the device layer's error)."""
    errors = sys.modules.get("labruntime.drivers.errors")
    return errors is not None and isinstance(exc, errors.OperationCancelled)


def run_claimed(
    weblab: Any,
    app: Any,
    task_store: TaskStore,
    record: TaskRecord,
    stop_event: threading.Event,
    worker_id: str,
) -> str:
    """Run a task this worker claimed and store how it ended. Returns the final status."""
    handle = WebLabTask(task_store, record)
    status, result_json, error = FAILED, "", None
    if record.name not in weblab._task_functions:
        error = error_info(
            "not-found",
            "LookupError",
            f"no task named {record.name!r} in this process: is the same app loaded here?",
        )
    else:
        try:
            result = _call(weblab, app, record, handle, stop_event)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the task's error
            if stop_event.is_set() and _cancelled(exc):  # the expected end of a stop()
                log.info("task %s (%s) stopped: %s", record.name, record.task_id, exc)
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
    for attempt in range(FINISH_ATTEMPTS):
        try:
            task_store.finish(
                record.task_id,
                status,
                worker_id=worker_id,
                result_json=result_json,
                error=error,
                data_json=data_json,
            )
            break
        except Exception:  # noqa: BLE001 - Redis restarting: retry, then leave it to the reaper
            log.warning("cannot store the end of task %s", record.task_id, exc_info=True)
            time.sleep(0.2 * (attempt + 1))
    return status
