"""What ``@weblab.task()`` returns: a :class:`TaskWrapper` to call, ``.delay()`` or
``.run_sync()``, kept in the lab's :class:`TaskRegistry`. ``.delay()`` checks that the
arguments are JSON, takes the unique lock (if any) and queues the task in one atomic step.

A wrapper belongs to the ``WebLab`` object, which may serve several apps: it reaches the current
app's :class:`~labruntime.tasks.service.TaskService` through the callable it is given."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from labruntime.devices.current import DeviceMap, bind_devices
from labruntime.devices.service import DeviceService
from labruntime.errors import AlreadyRunningError
from labruntime.store.records import TaskRecord
from labruntime.store.tasks import TaskStore

from .handle import TaskArgumentError, WebLabTask, new_task_id, to_json


class TaskContext(Protocol):
    """What a wrapper needs of the current app's task layer (a
    :class:`~labruntime.tasks.service.TaskService`)."""

    store: TaskStore
    devices: DeviceService

    def session_id(self) -> str | None: ...


log = logging.getLogger(__name__)

__all__ = ["TaskContext", "TaskRegistry", "TaskWrapper", "UNIQUE_CHOICES"]

UNIQUE_CHOICES = (None, "global", "user")
SYNC_LOCK_LEASE = 10.0  # seconds; a direct call renews its unique lock while it runs


def _arguments_json(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
    try:
        return json.dumps(list(args), allow_nan=False), json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError):
        pass  # find the culprit, to name it
    for i, value in enumerate(args):
        to_json(value, f"argument {i + 1} of {name}() ({type(value).__name__})")
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise TaskArgumentError(f"keyword {key!r} of {name}() is not a string")
        to_json(value, f"argument {key}= of {name}() ({type(value).__name__})")
    raise TaskArgumentError(f"the arguments of {name}() cannot be sent as JSON")


class TaskWrapper:
    """What ``@weblab.task()`` returns: call it, ``.delay()`` it or ``.run_sync()`` it."""

    def __init__(
        self,
        service: Callable[[], TaskContext],
        func: Callable[..., Any],
        unique: str | None,
        pool: str = "default",
        *,
        devices: tuple[str, ...] = (),
    ) -> None:
        if unique not in UNIQUE_CHOICES:
            raise ValueError(f"unique={unique!r} is invalid: use None, 'global' or 'user'")
        self._service = service
        self._func = func
        self._unique = unique
        self.pool = pool
        self.devices = tuple(devices)
        self.__name__ = self.name = func.__name__
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    @property
    def func(self) -> Callable[..., Any]:
        return self._func

    @property
    def unique(self) -> str | None:
        return self._unique

    def _lock_key(self, task_store: TaskStore, session_id: str | None) -> str | None:
        if self._unique is None:
            return None
        return task_store.lock_key(self.name, self._unique, session_id)

    def _already_running(self) -> AlreadyRunningError:
        scope = "in the whole lab" if self._unique == "global" else "for this session"
        return AlreadyRunningError(
            f"task {self.name} is unique {scope} and one is already queued or running; "
            f"wait for it (weblab.get_running_task({self.name!r}).join()) or stop it first"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here and now (taking the unique lock, if any).

        A device task called directly in the process holding its devices gets them as
        ``current_devices`` too; elsewhere, use ``.delay()``.
        """
        if self.devices:
            return self._call_with_devices(args, kwargs)
        return self._call(args, kwargs)

    def _call_with_devices(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        service = self._service()
        holder = service.devices.holder
        if holder is None or any(name not in holder.devices for name in self.devices):
            return self._call(args, kwargs)  # current_devices will say to use .delay()
        session_id = service.session_id()
        with holder.using(list(self.devices), session_id) as devices:
            with bind_devices(DeviceMap(devices, self.name)):
                return self._call(args, kwargs)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._unique is None:
            return self._func(*args, **kwargs)
        service = self._service()
        task_store = service.store
        key = self._lock_key(task_store, service.session_id())
        assert key is not None  # unique tasks have a lock key
        holder = f"sync:{new_task_id()}"
        if not task_store.lock(key, holder, SYNC_LOCK_LEASE):
            raise self._already_running()
        done = threading.Event()

        def renew() -> None:
            while not done.wait(SYNC_LOCK_LEASE / 3):
                try:
                    task_store.renew_lock(key, holder, SYNC_LOCK_LEASE)
                except Exception:  # noqa: BLE001 - keep renewing; the lease is the safety net
                    log.warning("cannot renew the unique lock of %s", self.name, exc_info=True)

        renewer = threading.Thread(target=renew, name=f"lock-{self.name}", daemon=True)
        renewer.start()
        try:
            return self._func(*args, **kwargs)
        finally:
            done.set()
            renewer.join()
            task_store.unlock(key, holder)

    def delay(self, *args: Any, **kwargs: Any) -> WebLabTask:
        """Queue the task; returns its handle at once. Arguments must be JSON."""
        args_json, kwargs_json = _arguments_json(self.name, args, kwargs)
        service = self._service()
        task_store = service.store
        session_id = service.session_id()
        task_id = new_task_id()
        lock = self._lock_key(task_store, session_id)
        pool = self.pool
        leases = None
        if self.devices:
            pool = service.devices.admit(self.name, list(self.devices), session_id)
            leases = service.devices.lease_keys(list(self.devices))
        if not task_store.enqueue(
            task_id,
            self.name,
            session_id,
            args_json,
            kwargs_json,
            pool=pool,
            lock=lock,
            leases=leases,
        ):
            raise self._already_running()
        record = TaskRecord(
            task_id=task_id,
            name=self.name,
            session_id=session_id,
            status="submitted",
            pool=pool,
            args=json.loads(args_json),
            kwargs=json.loads(kwargs_json),
            created=time.time(),
        )
        return WebLabTask(task_store, record)

    def run_sync(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> WebLabTask:
        """``delay()`` then ``join(timeout, error_on_timeout=False)``; returns the handle."""
        task = self.delay(*args, **kwargs)
        return task.join(timeout=timeout, error_on_timeout=False)

    def __repr__(self) -> str:
        devices = f" devices={list(self.devices)}" if self.devices else ""
        return f"<task {self.name} unique={self._unique!r}{devices}>"


class TaskRegistry:
    """The tasks a ``WebLab`` declared, by function name (names are unique)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskWrapper] = {}

    def add(self, wrapper: TaskWrapper) -> None:
        if wrapper.name in self._tasks:
            raise ValueError(
                f"two tasks are named {wrapper.name!r}: you can't have two tasks with the same "
                "name, rename one"
            )
        self._tasks[wrapper.name] = wrapper

    def get(self, name: str) -> TaskWrapper | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)
