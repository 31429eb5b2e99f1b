"""Which process holds which devices: ``--device`` options of the worker commands, the web
process's own holding, and releasing at exit.

- ``labruntime loop --device board`` (URL from WEBLAB_DEVICES), ``--device board=URL``, or a
  bare ``--device URL`` (binds to the lab's only device; an error if it has several).
- A web process running task threads (WEBLAB_TASK_THREADS_PROCESS > 0, not WEBLAB_NO_THREAD)
  holds every configured device that no live worker holds (single-process mode, ``flask
  run``); a deployment with a device worker sets WEBLAB_TASK_THREADS_PROCESS = 0 on the web.
"""

from __future__ import annotations

import logging
from typing import Any

from .devices import DeviceHolder
from .drivers import DeviceURLError, UnknownSchemeError, validate_device_url
from .errors import InvalidConfigError

log = logging.getLogger(__name__)

__all__ = ["hold_devices", "hold_free_devices", "parse_device_options", "release_devices"]

HOLDER_KEY = "labruntime.device_holder"


def parse_device_options(configured: dict[str, str], values: tuple[str, ...]) -> dict[str, str]:
    """``--device`` values -> {name: url}. Raises InvalidConfigError naming the bad value."""
    bindings: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and ":" in name:  # a bare URL with "=" in its query (sim:arduino?baud=...)
            name, sep, url = "", "", value
        if not sep and ":" not in value:
            name, url = value, configured.get(value, "")
            if not url:
                raise _unknown(value, value, configured)
        elif not sep:
            if len(configured) != 1:
                raise InvalidConfigError(
                    f"--device {value}: a bare URL binds to the lab's only device, but "
                    f"WEBLAB_DEVICES defines {sorted(configured) or 'none'}; write "
                    "--device NAME=URL"
                )
            name, url = next(iter(configured)), value
        if not name or not url:
            raise InvalidConfigError(f"--device {value!r} is invalid: use NAME, NAME=URL or URL")
        if name not in configured:  # admission only routes tasks to WEBLAB_DEVICES names
            raise _unknown(value, name, configured)
        try:
            validate_device_url(url)
        except (DeviceURLError, UnknownSchemeError) as error:
            raise InvalidConfigError(f"--device {value}: {error}") from error
        if name in bindings:
            raise InvalidConfigError(f"--device: device {name!r} is given twice")
        bindings[name] = url
    return bindings


def _unknown(value: str, name: str, configured: dict[str, str]) -> InvalidConfigError:
    return InvalidConfigError(
        f"--device {value}: no device {name!r} in the lab's WEBLAB_DEVICES (it defines "
        f"{sorted(configured) or 'none'}); tasks name their devices from WEBLAB_DEVICES: add "
        f"{name!r} there (a URL given here replaces the configured one)"
    )


def hold_devices(weblab: Any, app: Any, bindings: dict[str, str], worker_id: str) -> DeviceHolder:
    """Open and hold ``bindings`` (strict: a busy device raises DeviceBusyError)."""
    holder = DeviceHolder(weblab._device_store(app), bindings, worker_id).open(strict=True)
    app.extensions[HOLDER_KEY] = holder.start()
    return holder


def hold_free_devices(weblab: Any, app: Any, worker_id: str) -> DeviceHolder | None:
    """Web process with task threads: hold the configured devices no live worker holds
    (looked at once, when the runner threads start)."""
    from .globals import get_state

    configured = get_state(app).config.devices
    if not configured:
        return None
    store = weblab._device_store(app)
    held = store.holders(list(configured))
    free = {n: u for n, u in configured.items() if held.get(n) is None}
    for name in sorted(set(configured) - set(free)):
        log.info("device %s is held by worker %s: tasks using it run there", name, held[name])
    if not free:
        return None
    holder = DeviceHolder(store, free, worker_id).open(strict=False)
    if not holder.devices:
        return None
    app.extensions[HOLDER_KEY] = holder.start()
    log.info("this web process holds device(s) %s", sorted(holder.devices))
    return holder


def release_devices(app: Any) -> None:
    """Drive safe, close and release the devices this process holds for ``app``."""
    holder = app.extensions.pop(HOLDER_KEY, None)
    if holder is not None:
        holder.close(safe=True)
