"""The ``WebLab`` Flask extension: init_app, the lab's hooks and its public methods.

Per-app state lives in ``app.extensions["weblab"]`` (a :class:`~labruntime.state.LabState`,
built whole by :meth:`WebLab.init_app`), never on ``self``, so one ``WebLab`` object may serve
several apps. ``WebLab`` itself keeps only what the lab declares before ``init_app``: its hooks
and its tasks. Every public method delegates to the current app's state.

The settings ``timeout``, ``poll_interval``, ``cleaner_thread_interval`` (weblablib's names)
live in each app's frozen config: setting one replaces that value in the config of every app
this ``WebLab`` serves (same validation as the WEBLAB_* key). Running cleaner threads keep
their interval until they are restarted.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, g, has_app_context
from markupsafe import Markup

from .config import load_config
from .errors import (
    AlreadyInitializedError,
    InvalidConfigError,
    NoContextError,
    StoreUnavailableError,
    WebLabNotInitializedError,
)
from .globals import weblab_user
from .sessions.cookie_cache import install as install_cookie_cache
from .sessions.manager import create_token
from .sessions.users import CurrentUser, ExpiredUser
from .sessions.views import register_views, store_unavailable_response
from .state import STATE_KEY, Hooks, LabState, get_state
from .tasks.decorator import UNIQUE_CHOICES, TaskRegistry, TaskWrapper
from .tasks.handle import WebLabTask
from .tasks.worker import run_worker

__all__ = ["WebLab"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_JOIN_STEP = 0.05  # seconds; weblablib's default (labruntime's join waits on Redis)


def _seconds(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        sign = ">" if strict else ">="
        raise InvalidConfigError(
            f"weblab.{name}={value!r} is invalid: expected a number of seconds {sign} {minimum:g}"
        )
    return float(value)


def _device_names(devices: Any, device: Any) -> tuple[str, ...]:
    if isinstance(devices, str):
        devices = [devices]
    names = list(devices or []) + ([device] if device is not None else [])
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"devices={names!r} is invalid: give device names of WEBLAB_DEVICES")
    return tuple(dict.fromkeys(names))


class WebLab:
    """The lab's entry point: ``weblab = WebLab(app)`` or ``WebLab()`` + ``init_app(app)``."""

    def __init__(
        self,
        app: Flask | None = None,
        callback_url: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self._callback_url = callback_url
        self._base_url = base_url
        self._hooks = Hooks()
        self._registry = TaskRegistry()
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._join_step_time = DEFAULT_JOIN_STEP
        if app is not None:
            self.init_app(app)

    # -- setup ------------------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Validate the config, build the app's state, register the views, hooks and the
        template helpers."""
        if not isinstance(app, Flask):  # weblablib's phrase: "app must be a Flask app"
            raise InvalidConfigError(
                f"init_app({app!r}): app must be a Flask app, e.g. weblab.init_app(app) with "
                "app = Flask(__name__)"
            )
        if STATE_KEY in app.extensions:
            raise AlreadyInitializedError(
                f"labruntime is already initialized on app {app.name!r}: call init_app once "
                "(another WebLab extension already installed in this app)"
            )
        config = load_config(app.config, base_url=self._base_url, callback_url=self._callback_url)
        state = LabState(app, config, self._hooks, self._registry)
        app.extensions[STATE_KEY] = state
        self._apps.add(app)
        register_views(app, config.base_url, config.callback_url)
        _register_commands(app)
        install_cookie_cache(app)
        app.before_request(state.start_background)
        app.after_request(_save_request_data)
        app.context_processor(
            lambda: {
                "weblab_user": weblab_user,
                "weblab": self,
                "weblab_poll_script": self.poll_script,
            }
        )

    def shutdown(self, app: Flask | None = None, timeout: float = 10.0) -> None:
        """Stop this process's cleaner and task threads (their tasks asked to stop, waited
        up to ``timeout`` s), drive its devices safe and release them, close its Redis
        connection. The app's (``app`` or the current one); a later request starts them
        again. For tests, scripts and servers that end."""
        get_state(app).shutdown(timeout)

    # -- decorators -------------------------------------------------------------------------
    def _set_hook(self, name: str, func: Callable[..., Any]) -> None:
        current = getattr(self._hooks, name)
        if current is not None:
            raise InvalidConfigError(
                f"@weblab.{name} is already defined (by {current.__qualname__}): "
                "a lab registers it once"
            )
        setattr(self._hooks, name, func)

    def on_start(self, func: F) -> F:
        """``func(client_data, server_data)`` runs when a session starts; a dict -> data."""
        self._set_hook("on_start", func)
        return func

    def on_dispose(self, func: F) -> F:
        """``func()`` runs exactly once when a session ends, whatever ended it."""
        self._set_hook("on_dispose", func)
        return func

    def initial_url(self, func: F) -> F:
        """``func()`` returns the URL the student lands on after the RLMS link."""
        self._set_hook("initial_url", func)
        return func

    def user_loader(self, func: F) -> F:
        """``func(username_unique)`` returns the lab's user object (``weblab_user.user``)."""
        self._set_hook("user_loader", func)
        return func

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
        ``current_devices["board"]`` is the opened device (see :mod:`labruntime.devices`).
        """
        if callable(unique):  # used bare, as @weblab.task
            return self.task()(unique)
        if unique not in UNIQUE_CHOICES:
            raise ValueError(f"unique={unique!r} is invalid: use None, 'global' or 'user'")
        names = _device_names(devices, device)

        def decorator(func: Callable[..., Any]) -> TaskWrapper:
            wrapper = TaskWrapper(lambda: get_state().tasks, func, unique, pool, devices=names)
            self._registry.add(wrapper)
            return wrapper

        return decorator

    # -- sessions ---------------------------------------------------------------------------
    def clean_expired_users(self, app: Flask | None = None) -> int:
        """One cleaner pass (the ``clean-expired-users`` command). Returns sessions ended."""
        return self._state(app, "weblab.clean_expired_users()").clean()

    create_token = staticmethod(create_token)

    # -- tasks ------------------------------------------------------------------------------
    def get_task(self, identifier: Any) -> WebLabTask | None:
        """The task of the current session with this id, or the latest one of this function or
        name. None when there is none (or it belongs to another session).

        Outside any Flask context (a script, a thread) it works when this ``WebLab`` serves one
        app, as in weblablib: there is no student there, so a task id finds its task whatever
        its session."""
        if has_app_context():
            return get_state().tasks.get_task(identifier)
        state = self._only_state("weblab.get_task()")
        with state.app.app_context():
            return state.tasks.get_task(identifier)

    @property
    def tasks(self) -> list[WebLabTask]:
        """Every task of the current session still stored (oldest first)."""
        return get_state().tasks.tasks()

    @property
    def running_tasks(self) -> list[WebLabTask]:
        """The current session's tasks not finished yet (submitted or running)."""
        return get_state().tasks.running_tasks()

    def get_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        return get_state().tasks.get_tasks(func_or_name)

    def get_running_tasks(self, func_or_name: Any) -> list[WebLabTask]:
        return get_state().tasks.get_running_tasks(func_or_name)

    def get_running_task(self, func_or_name: Any) -> WebLabTask | None:
        tasks = self.get_running_tasks(func_or_name)
        return tasks[0] if tasks else None

    def join_tasks(
        self, func_or_name: Any, timeout: float | None = None, stop: bool = False
    ) -> None:
        """Wait (up to ``timeout`` seconds overall) for the unfinished tasks of this name;
        ``stop=True`` raises their ``stopping`` flag first."""
        get_state().tasks.join_tasks(func_or_name, timeout, stop)

    # -- running tasks from the lab's own code ------------------------------------------------
    def run_tasks(
        self, app: Flask | None = None, *, threads: int = 1, stop_timeout: float = 30.0
    ) -> None:
        """Run the tasks queued now in this process, then return (the ``run-tasks`` command).

        Needs an app context, or ``app``, or a WebLab serving one app (as in weblablib).
        ``threads`` tasks run in parallel. Holds no
        devices (``labruntime run-tasks --device ...`` does).
        """
        state = self._state(app, "weblab.run_tasks()")
        with state.app.app_context():
            run_worker(
                state.tasks,
                threads=threads,
                kind="run_tasks",
                stop=threading.Event(),
                drain=True,
                stop_timeout=stop_timeout,
            )

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
        command). ``reload`` is weblablib's flag: accepted, not supported (a warning). Holds no
        devices (``labruntime loop --device ...`` does)."""
        if reload:
            log.warning("weblab.loop(reload=True): reloading is not supported; ignored")
        state = self._state(app, "weblab.loop()")
        with state.app.app_context():
            run_worker(
                state.tasks,
                threads=threads,
                kind="loop",
                stop=stop or threading.Event(),
                cleaner=state.new_cleaner(reap=False),  # its heartbeat reaps
                stop_timeout=stop_timeout,
            )

    # -- settings -----------------------------------------------------------------------------
    def _state(self, app: Flask | None, what: str) -> LabState:
        """``app``'s state, else the current app's, else (no context) the one app served."""
        if app is not None or has_app_context():
            return get_state(app)
        return self._only_state(what)

    def _only_state(self, what: str) -> LabState:
        """Outside a Flask context: the state of the one app this WebLab serves."""
        apps = list(self._apps)
        if len(apps) != 1:
            served = "no app yet" if not apps else f"{len(apps)} apps"
            raise NoContextError(
                f"{what} was used outside a Flask context and this WebLab serves {served}: "
                "call it inside `with app.app_context():` (or a request, or a task)"
            )
        return get_state(apps[0])

    def _served_states(self) -> list[LabState]:
        """The current app's state in an app context, else every app's (init_app order)."""
        if has_app_context():
            return [get_state()]
        return [get_state(app) for app in self._apps]

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
            state.replace_config(**{field: value})

    @property
    def timeout(self) -> float:
        """WEBLAB_TIMEOUT: seconds without a poll before the session ends (<= 0: never)."""
        return self._setting("timeout", 15.0)

    @timeout.setter
    def timeout(self, value: float) -> None:
        value = _seconds("timeout", value, minimum=-math.inf, strict=False)
        self._set_setting("timeout", "timeout", value)

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
        return self._join_step_time

    @join_step_time.setter
    def join_step_time(self, value: float) -> None:
        self._join_step_time = _seconds("join_step_time", value, minimum=0, strict=True)

    # -- template helper --------------------------------------------------------------------
    def poll_script(self, logout_on_close: bool = False, callback: str | None = None) -> Markup:
        """A ``<script>`` that keeps the student's page polling (every WEBLAB_TIMEOUT / 2).

        ``logout_on_close`` ends the session when the page is closed; ``callback`` names a JS
        function called (with the poll reply) when polling stops: session over or lab gone.
        """
        from flask import session, url_for

        config = get_state().config
        if config.timeout <= 0:
            return Markup("<!-- WEBLAB_TIMEOUT <= 0: no polling needed -->")
        session_id = session.get(config.session_id_name)
        if not session_id:
            return Markup("<!-- no weblab session: no polling -->")
        interval = max(100, int(config.timeout * 1000 / 2))
        poll_url = json.dumps(url_for("weblab_poll_url", session_id=session_id))
        logout_url = json.dumps(url_for("weblab_logout_url", session_id=session_id))
        stop_code = (
            f"if (typeof {callback} === 'function') {{ {callback}(d); }}" if callback else ""
        )
        close_code = (
            "window.addEventListener('pagehide', function () {"
            f" navigator.sendBeacon({logout_url}); }});"
            if logout_on_close
            else ""
        )
        return Markup(
            "<script>(function () {"
            " var retries = 3, timer = null;"
            " function stop(d) { clearInterval(timer); " + stop_code + " }"
            f" function poll() {{ fetch({poll_url}, {{method: 'POST', credentials: 'same-origin',"
            " cache: 'no-store'}).then(function (r) {"
            " if (r.status === 502 || r.status === 503) { if (retries-- > 0) { return null; } }"
            " return r.json(); }).then(function (d) {"
            " if (d === null) { return; } if (!d.success) { stop(d); } else { retries = 3; } })"
            ".catch(function () { stop({success: false}); }); }"
            f" timer = setInterval(poll, {interval}); " + close_code + "})();</script>"
        )


def _register_commands(app: Flask) -> None:
    """Add the ``weblab`` group and the seed's top-level ``run-tasks``/``clean-expired-users``
    to ``app.cli`` (the same objects as the ``flask.commands`` entry points: listed once). A
    command of the lab's own with one of these names is kept."""
    from .cli.weblab import TOP_LEVEL_COMMANDS, weblab_group

    for command in (weblab_group, *TOP_LEVEL_COMMANDS):
        if command.name not in app.cli.commands:
            app.cli.add_command(command)


def _save_request_data(response: Any) -> Any:
    user = g.get("_weblab_user")
    if isinstance(user, CurrentUser | ExpiredUser) and user.data_changed:
        try:
            user.store()
        except StoreUnavailableError as error:
            return store_unavailable_response(error)
    return response
