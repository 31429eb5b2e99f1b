"""The one per-app state of labruntime, built whole by ``WebLab.init_app``.

``app.extensions["weblab"]`` holds a :class:`LabState`: the app's config, its Redis
connection and one typed service per domain, wired together here and nowhere else::

    LabState
      config      WebLabConfig (frozen; the WebLab settings replace it whole)
      hooks       the lab's on_start / on_dispose / initial_url / user_loader (the WebLab's)
      registry    the lab's tasks (the WebLab's)
      connection  store.connection.Connection, shared by every store
      sessions    sessions.manager.SessionManager   on store.sessions.SessionStore
      devices     devices.service.DeviceService     on store.devices.DeviceStore
      tasks       tasks.service.TaskService         on store.tasks.TaskStore
      cleaner, workers   this process's background threads (started by the first request)

A session's dispose is wired here: the task step (stop the session's tasks, revoke its
devices), then ``on_dispose`` with the student bound, then the session's devices driven safe.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_app_context, has_request_context, request

from .config import WebLabConfig
from .devices.service import DeviceService
from .errors import NoContextError, WebLabNotInitializedError
from .sessions.binding import bind_user
from .sessions.cleaner import CleanerThread
from .sessions.lifecycle import LifecycleLog
from .sessions.manager import DisposeOutcome, SessionManager
from .sessions.users import CurrentUser, ExpiredUser, make_user
from .store.connection import Connection
from .store.devices import DeviceStore
from .store.monitor import MonitorStore
from .store.records import SessionRecord
from .store.sessions import SessionStore
from .store.tasks import TaskStore
from .tasks.decorator import TaskRegistry
from .tasks.service import TaskService
from .tasks.worker import WorkerGroup

__all__ = ["STATE_KEY", "Hooks", "LabState", "get_state"]

log = logging.getLogger(__name__)

STATE_KEY = "weblab"  # app.extensions[STATE_KEY] is the LabState
EXIT_STOP_TIMEOUT = 10.0  # seconds a web process waits at exit for the tasks it runs


@dataclass
class Hooks:
    """The lab's callbacks, registered once each with ``@weblab.on_start``..."""

    on_start: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
    on_dispose: Callable[[], Any] | None = None
    initial_url: Callable[[], str] | None = None
    user_loader: Callable[[str | None], Any] | None = None


class LabState:
    """Everything labruntime keeps for one app (see the module docstring)."""

    def __init__(
        self, app: Flask, config: WebLabConfig, hooks: Hooks, registry: TaskRegistry
    ) -> None:
        self.app = app
        self.config = config
        self.hooks = hooks
        self.registry = registry
        self.connection = Connection(config.redis_url, config.redis_base, app.instance_path)
        self.sessions = SessionManager(
            SessionStore(self.connection, remember=config.session_cache),
            config,
            lifecycle=LifecycleLog(app.logger, self._event_context),
        )
        self.devices = DeviceService(
            app, config, DeviceStore(self.connection), MonitorStore(self.connection)
        )
        self.tasks = TaskService(
            app,
            config,
            TaskStore(self.connection, int(config.task_expires)),
            registry,
            self.devices,
            self.load_user,
        )
        self.cleaner: CleanerThread | None = None
        self._reap_due: float | None = None  # when the cleaner's next reaper pass is useful
        self.workers: list[WorkerGroup] = []
        self.background_pid: int | None = None
        #: set by CLI commands: requests in this process (test client) start no background thread
        self.no_background = False
        self._lock = threading.Lock()
        self._workers_lock = threading.Lock()

    def _event_context(self, status: int | None) -> dict[str, Any]:
        """The app's and the request's fields of a lifecycle event (weblablib's names); the
        route (``/callback/<session_id>``), never the path that holds the session id."""
        fields: dict[str, Any] = {
            "lab_name": self.app.config.get("LAB_NAME"),
            "environment": self.app.config.get("ENVIRONMENT"),
        }
        if has_request_context():
            rule = request.url_rule
            fields.update(
                path=rule.rule if rule is not None else None,
                endpoint=request.endpoint,
                method=request.method,
                status=status,
            )
        return fields

    def replace_config(self, **changes: Any) -> None:
        """A new config with ``changes`` (validated by the caller), for every service."""
        self.config = dataclasses.replace(self.config, **changes)
        self.sessions.config = self.tasks.config = self.devices.config = self.config

    # -- students ---------------------------------------------------------------------------
    def load_user(self, session_id: str, *, poll: bool = False) -> CurrentUser | ExpiredUser | None:
        """The session's user (None: no such session), recording a poll when ``poll``."""
        record = self.sessions.load(session_id, poll=poll)
        user = make_user(record, self.sessions, self.hooks.user_loader)
        return user if isinstance(user, CurrentUser | ExpiredUser) else None

    # -- session life cycle -----------------------------------------------------------------
    def run_on_start(self, record: SessionRecord) -> None:
        """The lab's ``on_start`` with the new student bound; a dict it returns is the data."""
        if self.hooks.on_start is None:
            return
        user = CurrentUser(record, self.sessions, self.hooks.user_loader)
        with self.app.app_context(), bind_user(user):
            result = self.hooks.on_start(record.client_data, record.server_data)
            if isinstance(result, dict):
                user.data = result
            elif result is not None:
                log.warning("on_start returned %s, not a dict: ignored", type(result).__name__)

    def _run_on_dispose(self, record: SessionRecord) -> None:
        """on_dispose, then drive the session's devices safe (in their holders)."""
        try:
            if self.hooks.on_dispose is not None:
                user = CurrentUser(record, self.sessions, self.hooks.user_loader)
                with self.app.app_context(), bind_user(user):
                    self.hooks.on_dispose()
        finally:
            with self.app.app_context():
                self.devices.drive_session_safe(record.session_id)

    def dispose(self, session_id: str, reason: str) -> DisposeOutcome:
        """End a session (RLMS, start failure, fake dispose): tasks, on_dispose, devices."""
        with self.app.app_context():
            return self.sessions.dispose(
                session_id, reason, self.tasks.dispose_steps, self._run_on_dispose
            )

    def clean(self, *, reap: bool = True) -> int:
        """One cleaner pass: end every session whose time is over, and (``reap``) reap dead
        workers' tasks (``worker-lost``). Returns how many sessions ended."""
        with self.app.app_context():
            ended = self.sessions.clean(
                self.tasks.dispose_steps, self._run_on_dispose, self.tasks.dispose_steps_many
            )
        if reap:
            self._reap_due = self.tasks.reap_dead()
        return ended

    def _next_due(self) -> float | None:
        """When the cleaner must pass again: a session due, or the next reaper pass."""
        due = [t for t in (self.sessions.next_due(), self._reap_due) if t is not None]
        return min(due) if due else None

    def new_cleaner(self, *, reap: bool = True) -> CleanerThread:
        """A cleaner thread for this lab (not started). The web processes' cleaners (``reap``)
        elect one of them, which runs the passes (see :mod:`.sessions.cleaner`). ``reap=False``:
        its passes only end sessions, for a worker process (``loop``) whose heartbeat already
        reaps dead workers every HEARTBEAT seconds while the cleaner runs; the reaper's looks
        (every few seconds while a worker is registered) are then left to the heartbeats and
        the web cleaners, and so are the passes while a web cleaner leads (``defer``)."""
        if not reap:
            return CleanerThread(
                lambda: self.clean(reap=False),
                self.sessions.next_due,
                self.config.cleaner_interval,
                defer=self.sessions.store.cleaner_led,
            )
        store, token = self.sessions.store, uuid.uuid4().hex
        return CleanerThread(
            self.clean,
            self._next_due,
            self.config.cleaner_interval,
            lead=lambda lease: store.lead_cleaner(token, lease),
            release=lambda: store.release_cleaner(token),
        )

    # -- this process's background threads -------------------------------------------------
    def start_background(self) -> None:
        """Start the cleaner and the task threads once per process (the first request does;
        never in CLI commands)."""
        if self.background_pid == os.getpid() or self.no_background:
            return
        with self._lock:
            if self.background_pid == os.getpid():
                return
            self.background_pid = os.getpid()
            if self.config.no_thread:
                return
            if self.config.autoclean_thread:
                self.cleaner = self.new_cleaner()
                self.cleaner.start()
                atexit.register(self.cleaner.stop)
            self.start_task_threads()

    def start_task_threads(self) -> None:
        """Start WEBLAB_TASK_THREADS_PROCESS runner threads in this process (none if 0 or
        WEBLAB_NO_THREAD), holding the configured devices no worker holds."""
        threads = int(self.config.task_threads_process)
        if self.config.no_thread or threads <= 0:
            return
        with self._workers_lock:
            if self.workers:
                return
            group = WorkerGroup(self.tasks, threads=threads, kind="threads")
            holder = self.devices.hold_free(group.worker_id)
            if holder is not None:
                group.add_pools(holder.pools)
            group.start()
            self.workers.append(group)
        atexit.register(self.stop_task_threads, EXIT_STOP_TIMEOUT)

    def stop_task_threads(self, timeout: float = 10.0) -> None:
        """Stop this process's runner threads (stopping their tasks, waiting up to
        ``timeout``), then drive safe and release the devices it holds."""
        with self._workers_lock:
            groups, self.workers = self.workers, []
        for group in groups:
            group.stop(timeout)
        self.devices.release()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop this process's cleaner and task threads, release its devices and close its
        Redis connection (reopened on next use; the next request starts the threads again)."""
        cleaner, self.cleaner = self.cleaner, None
        if cleaner is not None:
            cleaner.stop()
        self.stop_task_threads(timeout)
        self.background_pid = None
        self.connection.close()


def get_state(app: Flask | None = None) -> LabState:
    """The per-app state of labruntime (``app.extensions["weblab"]``); the current app's by
    default."""
    if app is None:
        if not has_app_context():
            raise NoContextError(
                "no Flask app context: use this inside a request, a task, or "
                "`with app.app_context():`"
            )
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get(STATE_KEY)
    if not isinstance(state, LabState):
        raise WebLabNotInitializedError(
            f"labruntime is not initialized on app {app.name!r}: call weblab.init_app(app)"
        )
    return state
