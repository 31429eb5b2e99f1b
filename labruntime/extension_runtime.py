"""weblablib's runtime surface of ``WebLab``: ``run_tasks()``, ``loop()`` and the settable
``timeout`` / ``poll_interval`` / ``cleaner_thread_interval`` / ``join_step_time``.

``run_tasks()`` and ``loop()`` run in the caller's process exactly what the ``run-tasks`` and
``loop`` commands run (a :class:`~labruntime.worker.WorkerGroup`, plus the cleaner for
``loop``); they hold no devices (use ``labruntime loop --device`` for that).

The settings live in each app's frozen config: setting one replaces that value in the config
of every app this ``WebLab`` serves (new value, same validation as the WEBLAB_* key). Running
cleaner threads keep their interval until they are restarted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import weakref
from typing import Any

from flask import Flask, has_app_context

from .errors import InvalidConfigError, WebLabNotInitializedError
from .globals import get_state

__all__ = ["RuntimeMixin"]

log = logging.getLogger(__name__)
DEFAULT_JOIN_STEP = 0.05  # seconds; weblablib's default (labruntime's join waits on Redis)


def _seconds(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        sign = ">" if strict else ">="
        raise InvalidConfigError(
            f"weblab.{name}={value!r} is invalid: expected a number of seconds {sign} {minimum:g}"
        )
    return float(value)


class RuntimeMixin:
    """Mixed into :class:`~labruntime.extension.WebLab`."""

    # -- the apps this WebLab serves ----------------------------------------------------------
    def _register_app(self, app: Flask) -> None:
        apps = self.__dict__.setdefault("_apps", weakref.WeakSet())
        apps.add(app)

    def _served_states(self) -> list[Any]:
        """The current app's state in an app context, else every app's (init_app order)."""
        if has_app_context():
            return [get_state()]
        return [get_state(app) for app in self.__dict__.get("_apps", ())]

    def _setting(self, field: str, default: float) -> float:
        states = self._served_states()
        return float(getattr(states[0].config, field)) if states else default

    def _set_setting(self, name: str, field: str, value: float) -> None:
        states = self._served_states()
        if not states:
            raise WebLabNotInitializedError(
                f"weblab.{name} cannot be set before init_app(app): set it after, or give the "
                "WEBLAB_* key in app.config"
            )
        for state in states:
            state.config = dataclasses.replace(state.config, **{field: value})
            state.sessions.config = state.config

    # -- settings -----------------------------------------------------------------------------
    @property
    def timeout(self) -> float:
        """WEBLAB_TIMEOUT: seconds without a poll before the session ends (<= 0: never)."""
        return self._setting("timeout", 15.0)

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._set_setting("timeout", "timeout", _seconds("timeout", value, minimum=-math.inf,
                                                          strict=False))  # fmt: skip

    @property
    def poll_interval(self) -> float:
        """WEBLAB_POLL_INTERVAL: the RLMS asks again in this many seconds (0: never)."""
        return self._setting("poll_interval", 5.0)

    @poll_interval.setter
    def poll_interval(self, value: float) -> None:
        value = _seconds("poll_interval", value, minimum=0, strict=False)
        self._set_setting("poll_interval", "poll_interval", value)

    @property
    def cleaner_thread_interval(self) -> float:
        """WEBLAB_CLEANER_INTERVAL: at most this many seconds between cleaner passes."""
        return self._setting("cleaner_interval", 5.0)

    @cleaner_thread_interval.setter
    def cleaner_thread_interval(self, value: float) -> None:
        value = _seconds("cleaner_thread_interval", value, minimum=0, strict=True)
        self._set_setting("cleaner_thread_interval", "cleaner_interval", value)

    @property
    def join_step_time(self) -> float:
        """weblablib's polling step of ``task.join()``; kept for compatibility, unused (the
        join here is woken by Redis when the task ends)."""
        return float(self.__dict__.get("_join_step_time", DEFAULT_JOIN_STEP))

    @join_step_time.setter
    def join_step_time(self, value: float) -> None:
        self.__dict__["_join_step_time"] = _seconds("join_step_time", value, minimum=0, strict=True)

    # -- running tasks from the lab's own code ------------------------------------------------
    def _worker_app(self, app: Flask | None) -> Flask:
        return app if app is not None else get_state().app

    def run_tasks(
        self, app: Flask | None = None, *, threads: int = 1, stop_timeout: float = 30.0
    ) -> None:
        """Run the tasks queued now in this process, then return (the ``run-tasks`` command).

        Needs an app context, or ``app``. ``threads`` tasks run in parallel.
        """
        from .worker import WorkerGroup

        app = self._worker_app(app)
        with app.app_context():
            tasks = self._task_store(app)  # type: ignore[attr-defined]
            group = WorkerGroup(self, app, tasks, threads, drain=True, kind="run_tasks")
            group.start()
            try:
                group.wait()
            finally:
                group.stop(stop_timeout)

    def loop(
        self,
        threads: int = 5,
        reload: bool = False,
        *,
        app: Flask | None = None,
        stop: threading.Event | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        """Run tasks and clean expired users here until ``stop`` is set or Ctrl-C (the ``loop``
        command). ``reload`` is weblablib's flag: accepted, not supported (a warning)."""
        from .sessions import CleanerThread
        from .worker import WorkerGroup

        if reload:
            log.warning("weblab.loop(reload=True): reloading is not supported; ignored")
        app = self._worker_app(app)
        stop = stop or threading.Event()
        with app.app_context():
            state = get_state(app)
            tasks = self._task_store(app)  # type: ignore[attr-defined]
            group = WorkerGroup(self, app, tasks, threads, kind="loop")
            cleaner = CleanerThread(
                lambda: self._clean(app),  # type: ignore[attr-defined]
                state.store.next_due,
                state.config.cleaner_interval,
            )
            group.start()
            cleaner.start()
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                log.info("weblab.loop: interrupted, stopping")
            finally:
                group.stop(stop_timeout)
                cleaner.stop()
