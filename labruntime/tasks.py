"""Tasks: long lab operations run off the request path, in runner threads or worker processes.

``@weblab.task(unique=None | 'global' | 'user')`` wraps a function in a :class:`TaskWrapper`:
calling it runs the function here and now; ``.delay(*args, **kwargs)`` queues it and returns a
:class:`~labruntime.task_handle.WebLabTask` handle; ``.run_sync(...)`` is delay + join.
Arguments, results and data are JSON. :class:`TasksMixin` gives ``WebLab`` the task API
(``get_task``, ``tasks``, ``join_tasks``...), starts the runner threads and drives dispose.
Where tasks run: :mod:`labruntime.worker`; storage: :mod:`labruntime.store.tasks`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .device_dispose import drive_session_devices_safe, revoke_devices
from .store.tasks import TaskRecord, TaskStore, error_info
from .task_handle import (
    TaskArgumentError,
    WebLabTask,
    current_task,
    current_task_stopping,
    running_task,
)
from .task_wrapper import UNIQUE_CHOICES, TaskWrapper

log = logging.getLogger(__name__)

__all__ = [
    "TaskArgumentError",
    "TaskWrapper",
    "TasksMixin",
    "WebLabTask",
    "current_task",
    "current_task_stopping",
]

DISPOSE_WAIT = 1.5  # seconds one dispose step may block waiting for tasks to finish
DISPOSE_ASK_AGAIN = 1.0  # seconds the RLMS is told to wait before asking again
EXIT_STOP_TIMEOUT = 10.0  # seconds a web process waits at exit for the tasks it runs


def _name_of(func_or_name: Any) -> str:
    if isinstance(func_or_name, str):
        return func_or_name
    inner = getattr(func_or_name, "func", None)
    if isinstance(func_or_name, TaskWrapper) and inner is not None:
        return inner.__name__
    name = getattr(func_or_name, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a task function, a task or its name, got {func_or_name!r}")
    return name


def _device_names(devices: Any, device: Any) -> tuple[str, ...]:
    if isinstance(devices, str):
        devices = [devices]
    names = list(devices or []) + ([device] if device is not None else [])
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"devices={names!r} is invalid: give device names of WEBLAB_DEVICES")
    return tuple(dict.fromkeys(names))


class _AppTasks:
    """Per-app task state, kept in ``app.extensions["labruntime.tasks"]``."""

    def __init__(self, task_store: TaskStore, dispose_timeout: float) -> None:
        self.task_store = task_store
        self.dispose_timeout = dispose_timeout
        self.workers: list[Any] = []
        self.lock = threading.Lock()


class TasksMixin:
    """The task API of ``WebLab`` (the seed's names): task, get_task, tasks, join_tasks..."""

    # -- registry ---------------------------------------------------------------------------
    @property
    def _task_functions(self) -> dict[str, TaskWrapper]:
        registry = self.__dict__.get("_task_registry")
        if registry is None:
            registry = self.__dict__["_task_registry"] = {}
        return registry

    def task(
        self,
        unique: str | None = None,
        pool: str = "default",
        *,
        devices: list[str] | tuple[str, ...] | None = None,
        device: str | None = None,
    ) -> Callable[[Callable[..., Any]], TaskWrapper]:
        """Decorator: ``@weblab.task()`` / ``@weblab.task(unique='global' | 'user')``.

        ``devices=["board", "led"]`` (or ``device="board"``): the task uses these devices of
        WEBLAB_DEVICES; it runs in the process holding them, where
        ``current_devices["board"]`` is the opened device (see :mod:`labruntime.device_tasks`).
        """
        if callable(unique):  # used bare, as @weblab.task
            return self.task()(unique)  # type: ignore[return-value]
        if unique not in UNIQUE_CHOICES:
            raise ValueError(f"unique={unique!r} is invalid: use None, 'global' or 'user'")
        names = _device_names(devices, device)

        def decorator(func: Callable[..., Any]) -> TaskWrapper:
            name = func.__name__
            if name in self._task_functions:
                raise ValueError(
                    f"two tasks are named {name!r}: task names must be unique, rename one"
                )
            wrapper = TaskWrapper(self, func, unique, pool, devices=names)
            self._task_functions[name] = wrapper
            return wrapper

        return decorator

    # -- context ----------------------------------------------------------------------------
    def _app_tasks(self, app: Any = None) -> _AppTasks:
        from .globals import get_state

        state = get_state(app)
        tasks = state.app.extensions.get("labruntime.tasks")
        if tasks is None:
            config = state.config
            task_store = TaskStore(state.store, int(config.task_expires))
            tasks = _AppTasks(task_store, config.dispose_timeout)
            tasks = state.app.extensions.setdefault("labruntime.tasks", tasks)
        return tasks

    def _task_store(self, app: Any = None) -> TaskStore:
        return self._app_tasks(app).task_store

    def _device_store(self, app: Any = None) -> Any:
        from .globals import get_state
        from .store.devices import DeviceStore

        state = get_state(app)
        found = state.app.extensions.get("labruntime.device_store")
        if found is None:
            found = state.app.extensions.setdefault(
                "labruntime.device_store", DeviceStore(state.store)
            )
        return found

    def _device_holder(self, app: Any = None) -> Any:
        """The DeviceHolder of this process for the app, or None."""
        from .globals import get_state

        holder = get_state(app).app.extensions.get("labruntime.device_holder")
        return holder if holder is not None and holder.pid == os.getpid() else None

    def _task_session_id(self) -> str | None:
        """The session tasks belong to here: the running task's, else the bound user's
        (on_start, on_dispose), else the request's (the student's cookie)."""
        ctx = running_task()
        if ctx is not None:
            return ctx.handle.session_id
        from flask import has_request_context, session

        from .globals import _bound_user, get_state

        bound = _bound_user.get()
        if bound is not None:
            return bound.session_id
        if not has_request_context():
            return None
        return session.get(get_state().config.session_id_name) or None

    def _load_task_user(self, session_id: str | None) -> Any:
        from .users import AnonymousUser

        if not session_id:
            return AnonymousUser()
        loader = getattr(self, "_load_user", None)
        user = loader(session_id) if loader is not None else None
        return user if user is not None else AnonymousUser()

    def _handles(self, records: list[TaskRecord]) -> list[WebLabTask]:
        task_store = self._task_store()
        return [WebLabTask(task_store, record) for record in records]

    # -- queries ----------------------------------------------------------------------------
    def get_task(self, identifier: Any) -> WebLabTask | None:
        """The task of the current session with this id, or the latest one of this function or
        name. None when there is none (or it belongs to another session)."""
        session_id = self._task_session_id()
        if isinstance(identifier, str):
            record = self._task_store().get(identifier)
            if record is not None and record.session_id == session_id:
                return WebLabTask(self._task_store(), record)
        try:
            name = _name_of(identifier)
        except TypeError:
            return None
        tasks = self.get_tasks(name)
        return tasks[-1] if tasks else None

    @property
    def tasks(self) -> list[WebLabTask]:
        """Every task of the current session still stored (oldest first)."""
        return self._handles(self._task_store().session_tasks(self._task_session_id()))

    @property
    def running_tasks(self) -> list[WebLabTask]:
        """The current session's tasks not finished yet (submitted or running)."""
        return self._handles(self._task_store().unfinished_tasks(self._task_session_id()))

    def get_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        name = _name_of(func_or_name)
        return [task for task in self.tasks if task.name == name]

    def get_running_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        name = _name_of(func_or_name)
        return [task for task in self.running_tasks if task.name == name]

    def get_running_task(self, func_or_name: Any) -> WebLabTask | None:
        tasks = self.get_running_tasks(func_or_name)
        return tasks[0] if tasks else None

    def join_tasks(
        self, func_or_name: Any, timeout: float | None = None, stop: bool = False
    ) -> None:
        """Wait (up to ``timeout`` seconds overall) for the unfinished tasks of this name;
        ``stop=True`` raises their ``stopping`` flag first."""
        tasks = self.get_running_tasks(func_or_name)
        if stop:
            for task in tasks:
                task.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        for task in tasks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            task.join(timeout=left, error_on_timeout=False)

    # -- background workers (called by WebLab._ensure_background) ----------------------------
    def _start_task_workers(self, app: Any) -> None:
        """Start WEBLAB_TASK_THREADS_PROCESS runner threads in this process (none if 0 or
        WEBLAB_NO_THREAD)."""
        from .globals import get_state
        from .worker import WorkerGroup

        config = get_state(app).config
        threads = int(config.task_threads_process)
        if config.no_thread or threads <= 0:
            return
        app_tasks = self._app_tasks(app)
        with app_tasks.lock:
            if app_tasks.workers:
                return
            from .device_worker import hold_free_devices

            group = WorkerGroup(self, app, app_tasks.task_store, threads=threads, kind="threads")
            holder = hold_free_devices(self, app, group.worker_id)
            if holder is not None:
                group.add_pools(holder.pools)
            group.start()
            app_tasks.workers.append(group)
        atexit.register(self._stop_task_workers, app, EXIT_STOP_TIMEOUT)

    def _stop_task_workers(self, app: Any, timeout: float = 10.0) -> None:
        """Stop this process's runner threads (stopping their tasks, waiting up to timeout)."""
        app_tasks = app.extensions.get("labruntime.tasks")
        if app_tasks is None:
            return
        with app_tasks.lock:
            groups, app_tasks.workers = app_tasks.workers, []
        for group in groups:
            group.stop(timeout)
        from .device_worker import release_devices

        release_devices(app)

    # -- dispose (called by the session layer before on_dispose) -----------------------------
    def _dispose_steps(self, session_id: str) -> float | None:
        """Stop the session's unfinished tasks and wait a little for them.

        None: nothing left running (go on with on_dispose). A positive number: ask again in
        that many seconds. Past WEBLAB_DISPOSE_TIMEOUT (from the first call) the remaining
        tasks are marked failed (``dispose-timeout``) and None is returned.
        """
        app_tasks = self._app_tasks()
        task_store = app_tasks.task_store
        revoke_devices(self, session_id, app_tasks.dispose_timeout)
        if not task_store.unfinished_ids(session_id):
            task_store.clear_dispose(session_id)
            return None
        started = task_store.dispose_started(session_id)
        for task_id in task_store.unfinished_ids(session_id):
            task_store.stop(task_id)
        task_store.reap_dead()
        limit = time.monotonic() + DISPOSE_WAIT
        while task_store.unfinished_ids(session_id):
            left = limit - time.monotonic()
            if left <= 0:
                break
            task_store.wait_session_event(session_id, left)
        else:
            task_store.clear_dispose(session_id)
            return None
        if time.time() - started >= app_tasks.dispose_timeout:
            error = error_info(
                "dispose-timeout",
                "DisposeTimeout",
                f"still running {app_tasks.dispose_timeout:g} s after the session ended "
                "(WEBLAB_DISPOSE_TIMEOUT); make the task check current_task_stopping",
            )
            failed = task_store.fail_unfinished(session_id, error)
            log.warning("session %s: %d task(s) failed with dispose-timeout", session_id, failed)
            task_store.clear_dispose(session_id)
            return None
        return DISPOSE_ASK_AGAIN

    def _dispose_devices(self, app: Any, session_id: str) -> dict[str, dict[str, Any]]:
        """Last dispose step (after on_dispose): see :mod:`labruntime.device_dispose`."""
        return drive_session_devices_safe(self, app, session_id)
