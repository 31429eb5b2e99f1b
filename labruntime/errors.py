"""The error tree of the session and task layer.

::

    Exception
     └── WebLabError                                  root of every labruntime runtime error
          ├── NoContextError (RuntimeError)            a proxy used outside a request/app context
          ├── WebLabNotInitializedError (RuntimeError) WebLab used before init_app
          ├── InvalidConfigError (ValueError)          a WEBLAB_* key (or SECRET_KEY) is wrong, or
          │                                            the setup is (init_app(None), a hook twice)
          ├── AlreadyRunningError (RuntimeError)       a unique task is already running
          ├── NotFoundError (LookupError)              no such session / task
          ├── TimeoutError (builtins.TimeoutError)     a wait passed its deadline
          ├── InvalidStartRequestError (ValueError)    the RLMS sent an unusable start request
          ├── StoreUnavailableError (ConnectionError)  Redis cannot be reached
          ├── AlreadyInitializedError (RuntimeError,   init_app called twice on one app
          │                            ValueError)     (a ValueError, as in weblablib)
          ├── DeviceUnavailableError (RuntimeError)     no live worker holds a task's device
          └── NotEnoughTimeError (RuntimeError)         an operation cannot end in time_left

Device leases that another process holds raise the drivers' ``DeviceBusyError``
(``labruntime.drivers``, a ``DriverError``), for the file lease and the Redis lease alike.

Errors become HTTP replies only in ``views.py`` and exit codes only in ``cli.py``.
"""

from __future__ import annotations

import builtins

__all__ = [
    "WebLabError",
    "NoContextError",
    "WebLabNotInitializedError",
    "InvalidConfigError",
    "AlreadyRunningError",
    "NotFoundError",
    "TimeoutError",
    "InvalidStartRequestError",
    "StoreUnavailableError",
    "AlreadyInitializedError",
    "DeviceUnavailableError",
    "NotEnoughTimeError",
]


class WebLabError(Exception):
    """Root of every error raised by labruntime's session and task layer."""


class NoContextError(WebLabError, RuntimeError):
    """A context-bound object (``weblab_user``...) was used outside a Flask context."""


class WebLabNotInitializedError(WebLabError, RuntimeError):
    """``WebLab`` was used on an app before ``weblab.init_app(app)``."""


class InvalidConfigError(WebLabError, ValueError):
    """A configuration key has a missing or wrong value."""


class AlreadyRunningError(WebLabError, RuntimeError):
    """A task marked unique is already running."""


class NotFoundError(WebLabError, LookupError):
    """The session or task does not exist (or no longer exists)."""


class TimeoutError(WebLabError, builtins.TimeoutError):  # noqa: A001 - the seed's name
    """A wait passed its deadline."""


class InvalidStartRequestError(WebLabError, ValueError):
    """The RLMS start request cannot be used (bad slot length, bad start time, bad JSON...).

    ``status`` is the HTTP status of the refusal: 200 for what a real RLMS may send (the
    protocol's ``{"error": true}`` reply), 400 for what none sends (a hostile ``back``,
    initial data nested too deeply).
    """

    def __init__(self, message: str, *, status: int = 200) -> None:
        super().__init__(message)
        self.status = status


class StoreUnavailableError(WebLabError, ConnectionError):
    """The Redis server cannot be reached (down, wrong URL, socket missing)."""


class AlreadyInitializedError(WebLabError, RuntimeError, ValueError):
    """``init_app`` was called twice on the same app. A ``ValueError`` too: every setup error
    is one (a lab's ``except ValueError`` written for weblablib catches it)."""


class DeviceUnavailableError(WebLabError, RuntimeError):
    """A task needs a device that no live worker holds (the message says what to start)."""


class NotEnoughTimeError(WebLabError, RuntimeError):
    """An operation would not finish within the student's ``time_left``."""
