"""Access to the lab's views: the decorators, ``poll()``, ``logout()`` and the forbidden page.

``@requires_active`` runs a view only for an active student (an expired one goes back to the
RLMS's ``back`` link, anyone else gets the forbidden page); ``@requires_login`` for any student
with a session. The ``socket_*`` variants disconnect a Socket.IO client instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, redirect, render_template

from labruntime.globals import current_user, socket_user
from labruntime.state import get_state

from .users import WebLabUser

__all__ = [
    "forbidden_response",
    "logout",
    "poll",
    "requires_active",
    "requires_login",
    "socket_requires_active",
    "socket_requires_login",
]

F = TypeVar("F", bound=Callable[..., Any])


def forbidden_response() -> Any:
    """The forbidden page: WEBLAB_UNAUTHORIZED_LINK, _TEMPLATE, or a plain 403."""
    config = get_state().config
    if config.unauthorized_link:
        return redirect(config.unauthorized_link)
    if config.unauthorized_template:
        return render_template(config.unauthorized_template), 403
    return Response("Access forbidden", 403, mimetype="text/plain")


def requires_login(func: F) -> F:
    """Run the view only for a student with a session (current or expired)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user().is_anonymous:
            return forbidden_response()
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def requires_active(func: F) -> F:
    """Run the view only for an active student; an expired one goes back to ``back``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user.active:
            return func(*args, **kwargs)
        if not user.is_anonymous and user.back:
            return redirect(user.back)
        return forbidden_response()

    return wrapper  # type: ignore[return-value]


def _socket_check(func: F, check: Callable[[WebLabUser], bool]) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if check(socket_user()):
            return func(*args, **kwargs)
        try:
            from flask_socketio import disconnect
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
    user = current_user()
    if user.is_anonymous or user.session_id is None:
        return False
    return get_state().sessions.poll(user.session_id)


def logout() -> bool:
    """End the current student's session (status answers -1; the cleaner disposes it)."""
    user = current_user()
    if user.is_anonymous or user.session_id is None:
        return False
    return get_state().sessions.logout(user.session_id)
