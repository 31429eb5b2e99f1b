"""Context proxies and helpers acting on the current student.

``weblab_user`` resolves, in order: a user bound with :func:`bind_user` (tasks, on_start,
on_dispose run outside any request), then the request's user (loaded once per request, one
Redis round trip that also records the poll), then :class:`AnonymousUser` in an app context.
Outside any Flask context it raises :class:`NoContextError` saying how to fix it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app, g, has_app_context, has_request_context, redirect, session
from werkzeug.local import LocalProxy

from .errors import NoContextError, WebLabNotInitializedError
from .users import AnonymousUser, CurrentUser, ExpiredUser, WebLabUser, make_user

if TYPE_CHECKING:
    from .extension import WebLabState

__all__ = [
    "weblab_user",
    "get_weblab_user",
    "socket_weblab_user",
    "bind_user",
    "get_state",
    "requires_active",
    "requires_login",
    "socket_requires_active",
    "socket_requires_login",
    "poll",
    "logout",
]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_bound_user: ContextVar[WebLabUser | None] = ContextVar("labruntime_bound_user", default=None)


def get_state(app: Any = None) -> WebLabState:
    """The per-app state of labruntime (``app.extensions["weblab"]``)."""
    if app is None:
        if not has_app_context():
            raise NoContextError(
                "no Flask app context: use this inside a request, a task, or "
                "`with app.app_context():`"
            )
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get("weblab")
    if state is None:
        raise WebLabNotInitializedError(
            f"labruntime is not initialized on app {app.name!r}: call weblab.init_app(app)"
        )
    return state


@contextmanager
def bind_user(user: WebLabUser) -> Iterator[WebLabUser]:
    """Make ``weblab_user`` be ``user`` in this block (outside requests); saves changed data."""
    token = _bound_user.set(user)
    try:
        yield user
    finally:
        _bound_user.reset(token)
        if isinstance(user, CurrentUser | ExpiredUser) and user.data_changed:
            user.store()


def _load(session_id: str, *, poll: bool) -> WebLabUser:
    state = get_state()
    record = state.sessions.load(session_id, poll=poll)
    return make_user(record, state.sessions, state.weblab._user_loader)


def _request_user() -> WebLabUser:
    cached = g.get("_weblab_user")
    if cached is not None:
        return cached
    state = get_state()
    session_id = session.get(state.config.session_id_name)
    user = _load(session_id, poll=state.config.autopoll) if session_id else AnonymousUser()
    g._weblab_user = user
    return user


def _current_user() -> WebLabUser:
    bound = _bound_user.get()
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


def _socket_user() -> WebLabUser:
    """Loaded afresh at each use (a socket connection outlives many changes); not a poll."""
    bound = _bound_user.get()
    if bound is not None:
        return bound
    if not has_request_context():
        return _current_user()
    session_id = session.get(get_state().config.session_id_name)
    return _load(session_id, poll=False) if session_id else AnonymousUser()


def get_weblab_user(cached: bool = True) -> WebLabUser:
    """The current user; ``cached=False`` reloads it from the store (long handlers, sockets)."""
    return _current_user() if cached else _socket_user()


weblab_user: WebLabUser = LocalProxy(_current_user)  # type: ignore[assignment]
socket_weblab_user: WebLabUser = LocalProxy(_socket_user)  # type: ignore[assignment]


def _forbidden() -> Any:
    from .views import forbidden_response

    return forbidden_response()


def requires_login(func: F) -> F:
    """Run the view only for a student with a session (current or expired)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if weblab_user.is_anonymous:
            return _forbidden()
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def requires_active(func: F) -> F:
    """Run the view only for an active student; an expired one goes back to ``back``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = _current_user()
        if user.active:
            return func(*args, **kwargs)
        if not user.is_anonymous and user.back:
            return redirect(user.back)
        return _forbidden()

    return wrapper  # type: ignore[return-value]


def _socket_check(func: F, check: Callable[[WebLabUser], bool]) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if check(_socket_user()):
            return func(*args, **kwargs)
        try:
            from flask_socketio import disconnect  # type: ignore[import-not-found]
        except ImportError:
            return None
        disconnect()
        return None

    return wrapper  # type: ignore[return-value]


def socket_requires_login(func: F) -> F:
    """Socket.IO handler runs only for a student with a session; else disconnect."""
    return _socket_check(func, lambda user: not user.is_anonymous)


def socket_requires_active(func: F) -> F:
    """Socket.IO handler runs only for an active student; else disconnect."""
    return _socket_check(func, lambda user: user.active)


def poll() -> bool:
    """Tell labruntime the current student is still there. False without a session."""
    user = _current_user()
    if user.is_anonymous or user.session_id is None:
        return False
    return get_state().sessions.poll(user.session_id)


def logout() -> bool:
    """End the current student's session (status answers -1; the cleaner disposes it)."""
    user = _current_user()
    if user.is_anonymous or user.session_id is None:
        return False
    return get_state().sessions.logout(user.session_id)
