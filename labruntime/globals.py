"""Context proxies: ``weblab_user``, ``socket_weblab_user``, ``current_task``,
``current_task_stopping``.

``weblab_user`` resolves, in order: a user bound with
:func:`~labruntime.sessions.binding.bind_user` (tasks, on_start, on_dispose run outside any
request), then the request's user (loaded once per request, one Redis round trip that also
records the poll), then :class:`AnonymousUser` in an app context. Outside any Flask context it
raises :class:`NoContextError` saying how to fix it.

Inside a running task, ``current_task`` is its handle and ``current_task_stopping`` turns true
once someone calls ``stop()`` (a local flag: reading it costs no Redis round trip).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import g, has_app_context, has_request_context, session
from werkzeug.local import LocalProxy

from .errors import NoContextError
from .sessions.binding import bound_user
from .sessions.users import AnonymousUser, WebLabUser
from .state import get_state
from .tasks.handle import running_task

if TYPE_CHECKING:
    from .tasks.handle import WebLabTask

__all__ = [
    "current_task",
    "current_task_stopping",
    "current_user",
    "get_weblab_user",
    "socket_user",
    "socket_weblab_user",
    "weblab_user",
]

log = logging.getLogger(__name__)


def _request_user() -> WebLabUser:
    cached = g.get("_weblab_user")
    if isinstance(cached, WebLabUser):
        return cached
    state = get_state()
    session_id = session.get(state.config.session_id_name)
    loaded = state.load_user(session_id, poll=state.config.autopoll) if session_id else None
    user: WebLabUser = loaded if loaded is not None else AnonymousUser()
    g._weblab_user = user
    return user


def current_user() -> WebLabUser:
    """The user ``weblab_user`` stands for now (see the module docstring)."""
    bound = bound_user()
    if bound is not None:
        return bound
    if has_request_context():
        return _request_user()
    if has_app_context():
        return AnonymousUser()
    raise NoContextError(
        "weblab_user was used outside a Flask context: use it in a view, a task, on_start/"
        "on_dispose, or inside `with app.app_context():`"
    )


def socket_user() -> WebLabUser:
    """Loaded afresh at each use (a socket connection outlives many changes); not a poll."""
    bound = bound_user()
    if bound is not None:
        return bound
    if not has_request_context():
        return current_user()
    state = get_state()
    session_id = session.get(state.config.session_id_name)
    loaded = state.load_user(session_id, poll=False) if session_id else None
    return loaded if loaded is not None else AnonymousUser()


def get_weblab_user(cached: bool = True) -> WebLabUser:
    """The current user; ``cached=False`` reloads it from the store (long handlers, sockets)."""
    return current_user() if cached else socket_user()


def _current_task() -> WebLabTask | None:
    ctx = running_task()
    return ctx.handle if ctx else None


def _current_task_stopping() -> bool:
    ctx = running_task()
    return bool(ctx and ctx.stop_event.is_set())


weblab_user: WebLabUser = LocalProxy(current_user)  # type: ignore[assignment]
socket_weblab_user: WebLabUser = LocalProxy(socket_user)  # type: ignore[assignment]
current_task: Any = LocalProxy(_current_task)
current_task_stopping: Any = LocalProxy(_current_task_stopping)
