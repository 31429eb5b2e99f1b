"""The task layer of one lab: :class:`TaskService` (``state.tasks``).

``@weblab.task(unique=None | 'global' | 'user')`` wraps a function in a
:class:`~.decorator.TaskWrapper`: calling it runs the function here and now; ``.delay(*args,
**kwargs)`` queues it and returns a :class:`~.handle.WebLabTask` handle; ``.run_sync(...)`` is
delay + join. Arguments, results and data are JSON. The service answers ``WebLab``'s task API
(``get_task``, ``tasks``, ``join_tasks``...), gives the runner what a task runs with (its user,
its devices) and runs the task step of a session's dispose (:mod:`.dispose`). Where tasks run:
:mod:`.worker`; storage: :mod:`labruntime.store.tasks`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, has_request_context, session

from labruntime.config import WebLabConfig
from labruntime.devices.service import DeviceService
from labruntime.sessions.binding import bound_user
from labruntime.sessions.users import AnonymousUser, WebLabUser
from labruntime.store.records import TaskRecord
from labruntime.store.tasks import TaskStore

from .decorator import TaskRegistry, TaskWrapper
from .dispose import dispose_steps
from .handle import WebLabTask, running_task

log = logging.getLogger(__name__)

__all__ = ["REAP_EVERY", "TaskService", "looks_like_task_id", "task_name"]

_TASK_ID = re.compile(r"[A-Za-z0-9_\-]{32}")  # secrets.token_urlsafe(24)
REAP_EVERY = 2.0  # seconds between the cleaner's reaper passes while a lapsed worker waits
REAP_LOOK_MAX = 10.0  # at most this long between two looks while workers are registered
# seconds after the first live lease could lapse before the cleaner looks: as late as a live
# worker's beat (worker.HEARTBEAT) may see a lapse, so the bound on worker-lost (LEASE +
# HEARTBEAT + REAP_GRACE) is unchanged, and a lab whose worker beats every 2 s (a 4 s lease)
# wakes its cleaner every 4-6 s instead of every 2-4 s
REAP_LATE = 2.0


def looks_like_task_id(text: str) -> bool:
    """True for a string shaped like a task id (:func:`~.handle.new_task_id`): such a string
    that finds no task of this session is "not found", never looked up as a task name."""
    return _TASK_ID.fullmatch(text) is not None


def task_name(func_or_name: Any) -> str:
    """The task name of a function, a task (TaskWrapper) or a name."""
    if isinstance(func_or_name, str):
        return func_or_name
    if isinstance(func_or_name, TaskWrapper):
        return func_or_name.func.__name__
    name = getattr(func_or_name, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a task function, a task or its name, got {func_or_name!r}")
    return name


class TaskService:
    """Tasks of one lab: queries, what a task runs with, dispose."""

    def __init__(
        self,
        app: Flask,
        config: WebLabConfig,
        store: TaskStore,
        registry: TaskRegistry,
        devices: DeviceService,
        load_user: Callable[[str], WebLabUser | None],
    ) -> None:
        self.app = app
        self.config = config
        self.store = store
        self.registry = registry
        self.devices = devices
        self._load_user = load_user

    # -- context ----------------------------------------------------------------------------
    def session_id(self) -> str | None:
        """The session tasks belong to here: the running task's, else the bound user's
        (on_start, on_dispose), else the request's (the student's cookie)."""
        ctx = running_task()
        if ctx is not None:
            return ctx.handle.session_id
        bound = bound_user()
        if bound is not None:
            return bound.session_id
        if not has_request_context():
            return None
        return session.get(self.config.session_id_name) or None

    def user_for(self, session_id: str | None) -> WebLabUser:
        """The user a task of ``session_id`` runs as (anonymous without a session)."""
        user = self._load_user(session_id) if session_id else None
        return user if user is not None else AnonymousUser()

    def handle(self, record: TaskRecord) -> WebLabTask:
        return WebLabTask(self.store, record)

    # -- queries ----------------------------------------------------------------------------
    def server_side(self) -> bool:
        """True in the lab's own code outside any student's context (a script, a thread of
        its own): no request, no running task, no bound user."""
        return running_task() is None and bound_user() is None and not has_request_context()

    def get_task(self, identifier: Any) -> WebLabTask | None:
        """The task of the current session with this id, or the latest one of this function or
        name. None when there is none (or it belongs to another session). Server side (see
        :meth:`server_side`) a task id finds its task whatever its session."""
        session_id = self.session_id()
        if isinstance(identifier, str):
            record = self.store.get(identifier)
            if record is not None and (record.session_id == session_id or self.server_side()):
                return self.handle(record)
            if looks_like_task_id(identifier) and identifier not in self.registry:
                return None  # an unknown, expired or another session's id: O(1), no name scan
        try:
            name = task_name(identifier)
        except TypeError:
            return None
        tasks = self.get_tasks(name)
        return tasks[-1] if tasks else None

    def tasks(self) -> list[WebLabTask]:
        """Every task of the current session still stored (oldest first)."""
        return [self.handle(r) for r in self.store.session_tasks(self.session_id())]

    def running_tasks(self) -> list[WebLabTask]:
        """The current session's tasks not finished yet (submitted or running)."""
        return [self.handle(r) for r in self.store.unfinished_tasks(self.session_id())]

    def get_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        name = task_name(func_or_name)
        return [task for task in self.tasks() if task.name == name]

    def get_running_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        name = task_name(func_or_name)
        return [task for task in self.running_tasks() if task.name == name]

    def join_tasks(self, func_or_name: Any, timeout: float | None, stop: bool) -> None:
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

    # -- reaping ----------------------------------------------------------------------------
    def reap_dead(self) -> float | None:
        """The cleaner's reaper pass: fail the running tasks of workers that died (so a web
        process reaps too, even when no other worker is alive: the Pi layout with one device
        worker). Returns when the next pass is useful (a time.time()), None: no worker:
        REAP_LATE seconds after the first live lease would lapse (a live worker renews it
        before: the pass then only looks again), or REAP_EVERY seconds while a lapsed worker
        waits out its grace."""
        reaped = self.store.reap_lapsed()  # one round trip when nobody lapsed
        if reaped.waiting:
            return time.time() + REAP_EVERY
        if reaped.live > 0 and reaped.next_lapse is not None:
            return time.time() + min(max(reaped.next_lapse, 0.0) + REAP_LATE, REAP_LOOK_MAX)
        return None

    # -- dispose ----------------------------------------------------------------------------
    def dispose_steps(self, session_id: str) -> float | None:
        """The task step of a dispose (see :func:`.dispose.dispose_steps`)."""
        self.devices.revoke(session_id, self.config.dispose_timeout)
        return dispose_steps(self.store, session_id, self.config.dispose_timeout)

    def dispose_steps_many(self, session_ids: list[str]) -> dict[str, float | None]:
        """:meth:`dispose_steps` of a cleaner pass's batch: sessions without unfinished tasks
        (most of them) cost two round trips together; the others each go through
        :func:`.dispose.dispose_steps`."""
        for session_id in session_ids:  # no-op without configured devices
            self.devices.revoke(session_id, self.config.dispose_timeout)
        counts = self.store.unfinished_counts(session_ids)
        idle = [sid for sid, count in zip(session_ids, counts, strict=True) if count == 0]
        self.store.clear_dispose_many(idle)
        result: dict[str, float | None] = dict.fromkeys(idle)
        for sid, count in zip(session_ids, counts, strict=True):
            if count:
                result[sid] = dispose_steps(self.store, sid, self.config.dispose_timeout)
        return result
