"""Logging of labruntime's own processes (``labruntime ...``, ``flask weblab loop`` and
``run-tasks``, the demo): INFO lines on stderr, which journald keeps under systemd, with
secrets masked (:class:`labruntime.redact.SecretFilter`).

A process that configured logging itself (gunicorn with ``config/gunicorn.conf.py``, a lab
calling ``logging.basicConfig``) keeps its handlers: only the filter is added to them.
``LABRUNTIME_LOG_LEVEL`` (DEBUG, INFO, WARNING...) changes the level.
"""

from __future__ import annotations

import logging
import os
import sys

from labruntime.redact import SecretFilter, add_secret

__all__ = ["FORMAT", "configure_logging", "register_lab_secrets"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FILTER = SecretFilter()


def configure_logging() -> None:
    """INFO (or LABRUNTIME_LOG_LEVEL) to stderr, secrets masked; idempotent."""
    level_name = os.environ.get("LABRUNTIME_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.INFO
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)  # other libraries: warnings only
    for each in root.handlers:
        if _FILTER not in each.filters:
            each.addFilter(_FILTER)
    logging.getLogger("labruntime").setLevel(level)
    logging.getLogger("werkzeug").setLevel(level)  # the demo's request lines


def register_lab_secrets(config: dict[str, object]) -> None:
    """The lab's RLMS password and Redis password never reach a log line of this process."""
    add_secret(str(config.get("WEBLAB_PASSWORD") or ""))
    url = config.get("WEBLAB_REDIS_URL")
    if isinstance(url, str) and url:
        from urllib.parse import urlsplit

        try:
            add_secret(urlsplit(url).password)
        except ValueError:
            pass
