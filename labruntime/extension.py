"""The ``WebLab`` Flask extension: init_app, the lab's hooks, background threads, dispose.

Per-app state lives in ``app.extensions["weblab"]`` (a :class:`WebLabState`), never on
``self``, so one ``WebLab`` object may serve several apps.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, g
from markupsafe import Markup

from .config import WebLabConfig, load_config
from .errors import AlreadyInitializedError, InvalidConfigError, StoreUnavailableError
from .extension_runtime import RuntimeMixin
from .globals import bind_user, get_state, weblab_user
from .sessions import CleanerThread, DisposeOutcome, SessionManager, create_token
from .store import SessionRecord, Store
from .tasks import TasksMixin
from .users import CurrentUser, ExpiredUser, WebLabUser, make_user
from .views import register_views

__all__ = ["WebLab", "WebLabState"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class WebLabState:
    """Everything labruntime keeps for one app."""

    app: Flask
    config: WebLabConfig
    store: Store
    sessions: SessionManager
    weblab: WebLab
    cleaner: CleanerThread | None = None
    background_pid: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: set by CLI commands: requests in this process (test client) start no cleaner/task threads
    no_background: bool = False


class WebLab(TasksMixin, RuntimeMixin):
    """The lab's entry point: ``weblab = WebLab(app)`` or ``WebLab()`` + ``init_app(app)``."""

    def __init__(
        self,
        app: Flask | None = None,
        callback_url: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self._callback_url = callback_url
        self._base_url = base_url
        self._on_start: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
        self._on_dispose: Callable[[], Any] | None = None
        self._initial_url: Callable[[], str] | None = None
        self._user_loader: Callable[[str | None], Any] | None = None
        if app is not None:
            self.init_app(app)

    # -- setup ------------------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Validate the config, then register the views, hooks and template helpers."""
        if "weblab" in app.extensions:
            raise AlreadyInitializedError(
                f"labruntime is already initialized on app {app.name!r}: call init_app once"
            )
        config = load_config(app.config, base_url=self._base_url, callback_url=self._callback_url)
        store = Store(config.redis_url, config.redis_base, app.instance_path)
        state = WebLabState(app, config, store, SessionManager(store, config), self)
        app.extensions["weblab"] = state
        self._register_app(app)
        register_views(app, config.base_url, config.callback_url)
        app.before_request(lambda: self._ensure_background(app))
        app.after_request(_save_request_data)
        app.context_processor(
            lambda: {
                "weblab_user": weblab_user,
                "weblab": self,
                "weblab_poll_script": self.poll_script,
            }
        )

    def _ensure_background(self, app: Flask) -> None:
        """Start the cleaner thread and task workers once per process (not in CLI commands)."""
        state = get_state(app)
        if state.background_pid == os.getpid() or state.no_background:
            return
        with state.lock:
            if state.background_pid == os.getpid():
                return
            state.background_pid = os.getpid()
            if state.config.no_thread:
                return
            if state.config.autoclean_thread:
                state.cleaner = CleanerThread(
                    lambda: self._clean(app),
                    state.store.next_due,
                    state.config.cleaner_interval,
                )
                state.cleaner.start()
                atexit.register(state.cleaner.stop)
            self._start_task_workers(app)

    def _stop_background(self, app: Flask, timeout: float = 10.0) -> None:
        """Stop the cleaner thread and the task threads of this process (tests, shutdown)."""
        state = get_state(app)
        if state.cleaner is not None:
            state.cleaner.stop()
            state.cleaner = None
        stop_tasks = getattr(self, "_stop_task_workers", None)
        if stop_tasks is not None:
            stop_tasks(app, timeout)
        state.background_pid = None

    # -- decorators -------------------------------------------------------------------------
    def _set_hook(self, attr: str, func: Callable[..., Any]) -> None:
        if getattr(self, attr) is not None:
            raise InvalidConfigError(
                f"@weblab.{attr[1:]} is already defined (by {getattr(self, attr).__qualname__}): "
                "a lab registers it once"
            )
        setattr(self, attr, func)

    def on_start(self, func: F) -> F:
        """``func(client_data, server_data)`` runs when a session starts; a dict -> data."""
        self._set_hook("_on_start", func)
        return func

    def on_dispose(self, func: F) -> F:
        """``func()`` runs exactly once when a session ends, whatever ended it."""
        self._set_hook("_on_dispose", func)
        return func

    def initial_url(self, func: F) -> F:
        """``func()`` returns the URL the student lands on after the RLMS link."""
        self._set_hook("_initial_url", func)
        return func

    def user_loader(self, func: F) -> F:
        """``func(username_unique)`` returns the lab's user object (``weblab_user.user``)."""
        self._set_hook("_user_loader", func)
        return func

    # -- lifecycle --------------------------------------------------------------------------
    def _run_on_start(self, app: Flask, record: SessionRecord) -> None:
        user = CurrentUser(record, get_state(app).sessions, self._user_loader)
        if self._on_start is None:
            return
        with app.app_context(), bind_user(user):
            result = self._on_start(record.client_data, record.server_data)
            if isinstance(result, dict):
                user.data = result
            elif result is not None:
                log.warning("on_start returned %s, not a dict: ignored", type(result).__name__)

    def _run_on_dispose(self, app: Flask, record: SessionRecord) -> None:
        """on_dispose, then drive the session's devices safe (in their holders)."""
        try:
            if self._on_dispose is not None:
                user = CurrentUser(record, get_state(app).sessions, self._user_loader)
                with app.app_context(), bind_user(user):
                    self._on_dispose()
        finally:
            with app.app_context():
                self._dispose_devices(app, record.session_id)

    def _dispose(self, app: Flask, session_id: str, reason: str) -> DisposeOutcome:
        return get_state(app).sessions.dispose(
            session_id,
            reason,
            self._dispose_steps,
            lambda record: self._run_on_dispose(app, record),
        )

    def _clean(self, app: Flask) -> int:
        with app.app_context():
            return get_state(app).sessions.clean(
                self._dispose_steps, lambda record: self._run_on_dispose(app, record)
            )

    def clean_expired_users(self, app: Flask | None = None) -> int:
        """One cleaner pass (the ``clean-expired-users`` command). Returns sessions ended."""
        return self._clean(app or get_state().app)

    def _load_user(self, session_id: str) -> CurrentUser | ExpiredUser | None:
        """The session's user without polling (needs only an app context)."""
        state = get_state()
        user: WebLabUser = make_user(
            state.sessions.load(session_id, poll=False), state.sessions, self._user_loader
        )
        return user if isinstance(user, CurrentUser | ExpiredUser) else None

    create_token = staticmethod(create_token)

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


def _save_request_data(response: Any) -> Any:
    user = g.get("_weblab_user")
    if isinstance(user, CurrentUser | ExpiredUser) and user.data_changed:
        try:
            user.store()
        except StoreUnavailableError as error:
            from .views import store_unavailable_response

            return store_unavailable_response(error)
    return response
