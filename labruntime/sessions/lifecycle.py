"""weblablib's session lifecycle events: one JSON line per event on the app's logger.

With ``WEBLAB_LOG_SESSION_LIFECYCLE`` on (the default), ``app.logger`` gets an INFO record
whose message is the JSON text (sorted keys) of::

    {"event": "weblab_session_lifecycle", "action": ..., "reason": ..., "session_id_hash": ...,
     "experiment_name", "category_name", "experiment_id", "lab_name", "environment",
     "seconds_since_start", "seconds_since_last_poll", "seconds_past_max_date",
     "configured_timeout_seconds", "disposing_resources", "source",
     and in a request: "path" (the route, e.g. /callback/<session_id>), "endpoint", "method",
     "status"}

Actions, as in weblablib 0.5.8+:

- ``protected_request_rejected``: ``@requires_active`` refused a request (an anonymous 403,
  reason ``anonymous_no_session_cookie`` / ``anonymous_session_not_found``; an ended student's
  redirect to ``back``, reason as below);
- ``expiry_detected``: once per session, when a status call or the cleaner finds its time over:
  reason ``time_limit_reached``, ``inactivity_timeout`` or ``user_exited``;
- ``disposed``: the session ended (``source``: what ended it: ``rlms``, ``logout``,
  ``slot over``, ``timeout``...).

Privacy: never the session id (the student's login link), the username, the full name or the
``back`` URL. ``session_id_hash`` is ``sha256(id).hexdigest()[:16]``, weblablib's length; its
first 8 digits are :func:`labruntime.redact.session_hash`, the name of a session in
labruntime's own log lines and gunicorn's ``sid:``, so the lines of one session match.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "EVENT_NAME",
    "LifecycleLog",
    "SessionFacts",
    "expiry_reason",
    "session_id_hash",
]

EVENT_NAME = "weblab_session_lifecycle"
HASH_DIGITS = 16  # weblablib's


class SessionFacts(Protocol):
    """What an event reads of a session: a stored record or a user object."""

    @property
    def session_id(self) -> str | None: ...
    @property
    def experiment_name(self) -> str | None: ...
    @property
    def category_name(self) -> str | None: ...
    @property
    def start_date(self) -> float | None: ...
    @property
    def max_date(self) -> float | None: ...
    @property
    def last_poll(self) -> float | None: ...
    @property
    def exited(self) -> bool: ...


def session_id_hash(session_id: str | None) -> str | None:
    """``sha256(id).hexdigest()[:16]``, the field weblablib's events carry (None: no id)."""
    if not session_id:
        return None
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:HASH_DIGITS]


def expiry_reason(facts: SessionFacts, timeout: float, now: float) -> str:
    """Why a session is over: ``user_exited``, ``time_limit_reached``, ``inactivity_timeout``,
    or ``unknown_expiry`` (e.g. the RLMS ended it early)."""
    if facts.exited:
        return "user_exited"
    if facts.max_date is not None and facts.max_date <= now:
        return "time_limit_reached"
    if timeout > 0 and facts.last_poll is not None and now - facts.last_poll >= timeout:
        return "inactivity_timeout"
    return "unknown_expiry"


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(round(value))


class LifecycleLog:
    """Writes the events on ``logger`` (the app's). ``context(status)`` adds the fields of the
    app and of the current request, if any (``lab_name``, ``environment``, ``path``...)."""

    def __init__(
        self,
        logger: logging.Logger,
        context: Callable[[int | None], dict[str, Any]] = lambda status: {},
    ) -> None:
        self.logger = logger
        self.context = context

    def emit(
        self,
        action: str,
        facts: SessionFacts | None,
        *,
        reason: str,
        timeout: float,
        now: float,
        session_id: str | None = None,
        source: str | None = None,
        status: int | None = None,
        disposing: bool | None = None,
    ) -> None:
        """Log one event. ``session_id`` names the session when ``facts`` is None (an
        anonymous request with a cookie of a session that is gone)."""
        sid = facts.session_id if facts is not None else session_id
        name = facts.experiment_name if facts is not None else None
        category = facts.category_name if facts is not None else None
        event: dict[str, Any] = {
            "event": EVENT_NAME,
            "action": action,
            "reason": reason,
            "session_id_hash": session_id_hash(sid),
            "experiment_name": name,
            "category_name": category,
            "experiment_id": f"{name}@{category}" if name is not None else None,
            "lab_name": None,
            "environment": None,
            "seconds_since_start": None,
            "seconds_since_last_poll": None,
            "seconds_past_max_date": None,
            "configured_timeout_seconds": _seconds(timeout),
            "disposing_resources": disposing,
        }
        if source is not None:
            event["source"] = source
        if facts is not None:
            if facts.start_date:
                event["seconds_since_start"] = _seconds(now - facts.start_date)
            if facts.last_poll:
                event["seconds_since_last_poll"] = _seconds(now - facts.last_poll)
            if facts.max_date:
                event["seconds_past_max_date"] = _seconds(max(0.0, now - facts.max_date))
        try:
            event.update(self.context(status))
            self.logger.info(json.dumps(event, sort_keys=True, default=str))
        except Exception:  # noqa: BLE001 - a log line never breaks a request or a dispose
            self.logger.warning("could not emit a session lifecycle event", exc_info=True)
