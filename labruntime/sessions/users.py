"""The student as the lab sees it: AnonymousUser, CurrentUser, ExpiredUser.

A session user wraps a :class:`~labruntime.store.records.SessionRecord` (it copies the
student's fields; it is not a record). ``data`` is a JSON dict, saved at the end of the request
when it changed (or at once with ``data.store()``). A request's user is loaded without the
RLMS's initial data: ``request_client_data``/``request_server_data`` read it on first use.
Every user class has the whole interface (``data``, ``time_left``, ``user``...), so
``weblab_user.data`` type-checks in a lab.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labruntime.store.records import STUDENT_FIELDS, TIME_FIELDS

if TYPE_CHECKING:
    from labruntime.store.records import SessionRecord

    from .manager import SessionManager

__all__ = ["WebLabUser", "AnonymousUser", "CurrentUser", "ExpiredUser", "SessionData", "make_user"]


class SessionData(dict[str, Any]):
    """``weblab_user.data``: a dict with ``store()`` (save now) and ``retrieve()`` (reload)."""

    def __init__(self, owner: _SessionUser | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def store(self) -> None:
        """Save the data now."""
        if self._owner is not None:
            self._owner.store()

    def retrieve(self) -> None:
        """Replace the contents with what is stored now."""
        if self._owner is not None:
            self._owner.retrieve()


class WebLabUser:
    """What every user has (the seed's attribute names; None: not sent by the RLMS)."""

    is_anonymous = False
    username: str | None = None
    username_unique: str | None = None
    full_name: str | None = None
    locale: str | None = None
    back: str | None = None
    experiment_name: str | None = None
    category_name: str | None = None
    session_id: str | None = None
    start_date: float | None = None
    max_date: float | None = None
    last_poll: float | None = None
    exited = False

    @property
    def request_client_data(self) -> dict[str, Any]:
        """The RLMS's client initial data of the session (empty without one)."""
        return {}

    @property
    def request_server_data(self) -> dict[str, Any]:
        """The RLMS's server initial data of the session (empty without one)."""
        return {}

    @property
    def active(self) -> bool:
        return False

    @property
    def time_left(self) -> float:
        return 0.0

    @property
    def data(self) -> SessionData:
        """The lab's data of the session (a JSON dict); empty and read-only without one."""
        return SessionData()

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        raise AttributeError("weblab_user.data cannot be set without a session")

    @property
    def user(self) -> Any:
        """The lab's own user object (``@weblab.user_loader``); None without a session."""
        return None

    @property
    def experiment_id(self) -> str | None:
        if self.experiment_name is None:
            return None
        return f"{self.experiment_name}@{self.category_name}"

    def __repr__(self) -> str:
        who = self.username_unique or self.username
        return f"<{type(self).__name__} {who!r} session {self.session_id!r}>"

    def __str__(self) -> str:
        return repr(self)


class AnonymousUser(WebLabUser):
    """No session: the forbidden page."""

    is_anonymous = True

    def __repr__(self) -> str:
        return "<AnonymousUser>"


class _SessionUser(WebLabUser):
    def __init__(
        self,
        record: SessionRecord,
        manager: SessionManager,
        user_loader: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._record = record
        self._manager = manager
        self._user_loader = user_loader
        self._data: SessionData | None = None
        self._user_loaded = False
        self._user: Any = None
        for name in STUDENT_FIELDS + TIME_FIELDS:
            setattr(self, name, getattr(record, name))
        self.session_id = record.session_id
        self.exited = record.exited

    def _blobs(self) -> SessionRecord:
        """The record with the RLMS's initial data, read on first use (a request reads only
        the small fields: their size costs nothing to a view that does not use them)."""
        if not self._record.blobs_loaded:
            self._manager.store.load_blobs(self._record)
        return self._record

    @property
    def request_client_data(self) -> dict[str, Any]:
        return self._blobs().client_data

    @property
    def request_server_data(self) -> dict[str, Any]:
        return self._blobs().server_data

    @property
    def data(self) -> SessionData:
        if self._data is None:
            self._data = SessionData(self, json.loads(self._record.data_json or "{}"))
        return self._data

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"weblab_user.data must be a dict, not {type(value).__name__}")
        self._data = SessionData(self, value)

    def _dump(self) -> str:
        try:
            return json.dumps(dict(self.data))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"weblab_user.data must hold JSON values only (str, number, bool, None, "
                f"list, dict): {error}"
            ) from error

    @property
    def data_changed(self) -> bool:
        """True when ``data`` differs from what was loaded or last stored."""
        return self._data is not None and self._dump() != self._record.data_json

    def store(self) -> None:
        """Save ``data`` now (one round trip)."""
        dumped = self._dump()
        self._manager.store.save_data(self.session_id or "", dumped)
        self._record.data_json = dumped

    def update_data(self, new_data: dict[str, Any] | None = None) -> None:
        """Deprecated (weblablib 0.5): use ``weblab_user.data.store()``. Saves ``data`` now."""
        warnings.warn(
            "weblab_user.update_data() is deprecated: use weblab_user.data.store()",
            DeprecationWarning,
            stacklevel=2,
        )
        if new_data is not None:
            self.data = new_data
        self.store()

    def retrieve(self) -> None:
        """Reload ``data`` from the store."""
        fresh = self._manager.store.load_session(self.session_id or "")
        if fresh is not None:
            self._record.data_json = fresh.data_json
        content = json.loads(self._record.data_json or "{}")
        if self._data is None:
            self._data = SessionData(self, content)
        else:
            dict.clear(self._data)
            dict.update(self._data, content)

    @property
    def user(self) -> Any:
        """The lab's own user object, from ``@weblab.user_loader`` (loaded once)."""
        if not self._user_loaded:
            self._user_loaded = True
            if self._user_loader is not None:
                self._user = self._user_loader(self.username_unique)
        return self._user


class CurrentUser(_SessionUser):
    """A student with a session (``active`` turns False once the time is over).

    ``start_date``, ``max_date`` and ``last_poll`` are Unix timestamps, as in weblablib.
    """

    @property
    def time_without_polling(self) -> float:
        """Seconds since the last poll."""
        return self._manager.clock() - self._record.last_poll

    @property
    def active(self) -> bool:
        return self._manager.is_active(self._record, self._manager.clock())

    @property
    def time_left(self) -> float:
        if self._record.status != "active":
            return 0.0
        return max(0.0, self._record.max_date - self._manager.clock())


class ExpiredUser(_SessionUser):
    """A student whose session ended, kept WEBLAB_EXPIRED_USERS_TIMEOUT seconds."""


def make_user(
    record: SessionRecord | None,
    manager: SessionManager,
    user_loader: Callable[[str | None], Any] | None = None,
) -> WebLabUser:
    """The right user class for a stored record."""
    if record is None:
        return AnonymousUser()
    if record.status == "expired":
        return ExpiredUser(record, manager, user_loader)
    return CurrentUser(record, manager, user_loader)
