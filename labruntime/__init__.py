"""labruntime: the session, task and device runtime for remote laboratories.

A lab written for weblablib runs by changing its imports::

    from labruntime import WebLab, weblab_user, requires_active

Devices (WEBLAB_DEVICES) reach tasks as ``current_devices["board"]`` inside
``@weblab.task(device="board")``; ``require_time(seconds)`` refuses what cannot finish in
the student's time. See :mod:`labruntime.devices`; the layout: ``docs/architecture.md``.

The package loads lazily: ``import labruntime`` (and so ``import labruntime.drivers`` and the
pytest HIL plugin) imports neither flask nor redis; each public name below is imported from its
module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .devices.current import current_devices
    from .devices.time_budget import require_time
    from .errors import (
        AlreadyInitializedError,
        AlreadyRunningError,
        DeviceUnavailableError,
        InvalidConfigError,
        InvalidStartRequestError,
        NoContextError,
        NotEnoughTimeError,
        NotFoundError,
        StoreUnavailableError,
        TimeoutError,
        WebLabError,
        WebLabNotInitializedError,
    )
    from .extension import WebLab
    from .globals import (
        current_task,
        current_task_stopping,
        get_weblab_user,
        socket_weblab_user,
        weblab_user,
    )
    from .sessions.access import (
        logout,
        poll,
        requires_active,
        requires_login,
        socket_requires_active,
        socket_requires_login,
    )
    from .sessions.manager import create_token
    from .sessions.monitor_view import serial_monitor
    from .sessions.users import AnonymousUser, CurrentUser, ExpiredUser, WebLabUser
    from .tasks.handle import TaskArgumentError, WebLabTask

__all__ = [
    "WebLab",
    "weblab_user",
    "get_weblab_user",
    "socket_weblab_user",
    "requires_active",
    "requires_login",
    "socket_requires_active",
    "socket_requires_login",
    "poll",
    "logout",
    "create_token",
    "serial_monitor",
    "current_task",
    "current_task_stopping",
    "current_devices",
    "require_time",
    "WebLabTask",
    "TaskArgumentError",
    "WebLabUser",
    "AnonymousUser",
    "CurrentUser",
    "ExpiredUser",
    "WebLabError",
    "NoContextError",
    "InvalidConfigError",
    "WebLabNotInitializedError",
    "NotFoundError",
    "AlreadyRunningError",
    "AlreadyInitializedError",
    "InvalidStartRequestError",
    "StoreUnavailableError",
    "TimeoutError",
    "DeviceUnavailableError",
    "NotEnoughTimeError",
]

#: this module's namespace (the name ``globals`` becomes the submodule once that is imported)
_NAMESPACE = globals()

#: public name -> the module (in this package) that defines it
_WHERE: dict[str, str] = {
    "WebLab": "extension",
    "weblab_user": "globals",
    "get_weblab_user": "globals",
    "socket_weblab_user": "globals",
    "requires_active": "sessions.access",
    "requires_login": "sessions.access",
    "socket_requires_active": "sessions.access",
    "socket_requires_login": "sessions.access",
    "poll": "sessions.access",
    "logout": "sessions.access",
    "create_token": "sessions.manager",
    "serial_monitor": "sessions.monitor_view",
    "current_task": "globals",
    "current_task_stopping": "globals",
    "current_devices": "devices.current",
    "require_time": "devices.time_budget",
    "WebLabTask": "tasks.handle",
    "TaskArgumentError": "tasks.handle",
    "WebLabUser": "sessions.users",
    "AnonymousUser": "sessions.users",
    "CurrentUser": "sessions.users",
    "ExpiredUser": "sessions.users",
    "WebLabError": "errors",
    "NoContextError": "errors",
    "InvalidConfigError": "errors",
    "WebLabNotInitializedError": "errors",
    "NotFoundError": "errors",
    "AlreadyRunningError": "errors",
    "AlreadyInitializedError": "errors",
    "InvalidStartRequestError": "errors",
    "StoreUnavailableError": "errors",
    "TimeoutError": "errors",
    "DeviceUnavailableError": "errors",
    "NotEnoughTimeError": "errors",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562), then cache it here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    _NAMESPACE[name] = value  # the next lookup finds it without __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(_NAMESPACE) | set(__all__))
