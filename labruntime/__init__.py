"""labruntime: the session, task and device runtime for remote laboratories.

A lab written for weblablib runs by changing its imports::

    from labruntime import WebLab, weblab_user, requires_active

Devices (WEBLAB_DEVICES) reach tasks as ``current_devices["board"]`` inside
``@weblab.task(device="board")``; ``require_time(seconds)`` refuses what cannot finish in
the student's time. See :mod:`labruntime.device_tasks`.
"""

from __future__ import annotations

from .admission import require_time
from .device_tasks import current_devices
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
    get_weblab_user,
    logout,
    poll,
    requires_active,
    requires_login,
    socket_requires_active,
    socket_requires_login,
    socket_weblab_user,
    weblab_user,
)
from .sessions import create_token
from .tasks import TaskArgumentError, WebLabTask, current_task, current_task_stopping
from .users import AnonymousUser, CurrentUser, ExpiredUser, WebLabUser

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
