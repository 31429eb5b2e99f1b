"""The user bound to this context outside requests: in tasks, ``on_start`` and ``on_dispose``.

``weblab_user`` (:mod:`labruntime.globals`) looks here first, then at the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .users import CurrentUser, ExpiredUser, WebLabUser

__all__ = ["bind_user", "bound_user"]

_bound_user: ContextVar[WebLabUser | None] = ContextVar("labruntime_bound_user", default=None)


def bound_user() -> WebLabUser | None:
    """The user bound with :func:`bind_user` in this context, or None."""
    return _bound_user.get()


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
