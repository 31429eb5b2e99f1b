"""Access to the lab's views: the decorators, ``poll()``, ``logout()`` and the forbidden page.

``@requires_active`` runs a view only for an active student (an expired one goes back to the
RLMS's ``back`` link, anyone else gets the forbidden page); ``@requires_login`` for any student
with a session. The ``socket_*`` variants disconnect a Socket.IO client instead.

Both decorators also refuse (403) a state-changing request (POST, PUT, PATCH, DELETE) that
another site's page sent: a forged form or ``fetch`` carrying the student's cookie. The lab's
own pages are not concerned (same origin).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, jsonify, redirect, render_template, request, session

from labruntime.globals import current_user, socket_user
from labruntime.state import get_state

from .http_guard import cross_site_problem
from .start_request import safe_back
from .users import WebLabUser

__all__ = [
    "cross_site_response",
    "forbidden_response",
    "logout",
    "poll",
    "requires_active",
    "requires_login",
    "socket_requires_active",
    "socket_requires_login",
]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


def forbidden_response() -> Any:
    """The forbidden page: WEBLAB_UNAUTHORIZED_LINK, _TEMPLATE, or a plain 403."""
    config = get_state().config
    if config.unauthorized_link:
        return redirect(config.unauthorized_link)
    if config.unauthorized_template:
        return render_template(config.unauthorized_template), 403
    return Response("Access forbidden", 403, mimetype="text/plain")


def cross_site_response(problem: str) -> Any:
    """403 for a state-changing request another site sent (JSON to a JSON client)."""
    message = f"Refused: {problem}. Use the laboratory's own page."
    route = request.url_rule.rule if request.url_rule else "(no route)"  # no session id
    log.warning("refused a cross-site %s to %s: %s", request.method, route, problem)
    if request.is_json or request.accept_mimetypes.best == "application/json":
        reply = jsonify(error=True, message=message)
        reply.status_code = 403
        return reply
    return Response(message, 403, mimetype="text/plain")


def requires_login(func: F) -> F:
    """Run the view only for a student with a session (current or expired)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        problem = cross_site_problem()
        if problem:
            return cross_site_response(problem)
        if current_user().is_anonymous:
            return forbidden_response()
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def requires_active(func: F) -> F:
    """Run the view only for an active student; an expired one goes back to ``back``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        problem = cross_site_problem()
        if problem:
            return cross_site_response(problem)
        user = current_user()
        if user.active:
            return func(*args, **kwargs)
        back = None if user.is_anonymous else safe_back(user.back)
        reply = redirect(back) if back else forbidden_response()
        _log_rejected(user, reply)
        return reply

    return wrapper  # type: ignore[return-value]


def _log_rejected(user: WebLabUser, reply: Any) -> None:
    """weblablib's ``protected_request_rejected`` lifecycle event (see sessions/lifecycle)."""
    state = get_state()
    status = reply[1] if isinstance(reply, tuple) else getattr(reply, "status_code", 403)
    cookie = session.get(state.config.session_id_name) if user.is_anonymous else None
    facts = None if user.is_anonymous else user
    state.sessions.rejected(facts, int(status), str(cookie) if cookie else None)


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
