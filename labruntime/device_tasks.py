"""Tasks that use devices: routing, admission, ``current_devices``, progress, stop -> cancel.

The one way to reach a device inside a task::

    from labruntime import current_devices

    @weblab.task(device="board")
    def program_device(hex_text):
        board = current_devices["board"]          # the opened Device the task asked for
        require_time(board.estimate_seconds(hex_text), margin=2)
        return board.program(hex_text).to_dict()  # progress -> task.progress, automatically

- **Routing.** A task with ``devices=[...]`` goes to the queue (pool) ``devices:<a+b>`` (names
  sorted); the process holding those devices (``labruntime loop --device ...``, or the web
  process with runner threads) takes from the pool of every subset of its devices.
- **Admission** (``.delay()``): every device must have a live holder, the same one for all;
  else :class:`~labruntime.errors.DeviceUnavailableError` says which worker to start. A session
  being disposed may start no more device tasks, nor may anyone use a device whose last
  ``safe()`` failed (the lab is not ready until one succeeds).
- **Progress.** Every operation on the task's devices reports to ``task.progress``
  ({stage, done, total, fraction, updated}), written to Redis at most 10 times a second (the
  last event is always written).
- **Stop.** ``task.stop()`` cancels the operations on the task's devices at their next safe
  point (the worker's stop listener calls ``ops.cancel_all()``).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from werkzeug.local import LocalProxy

from .errors import DeviceUnavailableError, NoContextError

if TYPE_CHECKING:  # the device layer loads only when a device is used
    from .drivers import Device, Progress

log = logging.getLogger(__name__)

__all__ = [
    "DeviceMap",
    "ProgressWriter",
    "admit",
    "current_devices",
    "device_pool",
    "pools_for",
    "worker_command",
]

POOL_PREFIX = "devices:"
PROGRESS_INTERVAL = 0.1  # seconds between progress writes (<= 10 a second)
MAX_POOL_DEVICES = 4  # a holder serves every subset of its devices, up to this size


def device_pool(names: list[str] | tuple[str, ...]) -> str:
    """The queue of tasks needing exactly these devices: ``devices:board+led``."""
    return POOL_PREFIX + "+".join(sorted(set(names)))


def pools_for(names: list[str]) -> list[str]:
    """Every pool a holder of ``names`` serves (each non-empty subset, up to 4 devices)."""
    names = sorted(set(names))
    pools = []
    for size in range(1, min(len(names), MAX_POOL_DEVICES) + 1):
        pools += [device_pool(list(c)) for c in itertools.combinations(names, size)]
    return pools


class DeviceMap(Mapping[str, "Device"]):
    """Read-only mapping of the opened devices a task declared (``current_devices``)."""

    def __init__(self, devices: dict[str, Device], task_name: str) -> None:
        self._devices = dict(devices)
        self._task = task_name

    def __getitem__(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            raise KeyError(
                f"task {self._task} did not declare device {name!r}; it declared "
                f"{sorted(self._devices)}: add it with @weblab.task(devices=[...])"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)

    def __repr__(self) -> str:
        return f"<current_devices {sorted(self._devices)}>"


_bound: ContextVar[DeviceMap | None] = ContextVar("labruntime_devices", default=None)


def _current_devices() -> DeviceMap:
    devices = _bound.get()
    if devices is None:
        raise NoContextError(
            "current_devices is only available inside a task declared with "
            "@weblab.task(devices=[...]) (or device=...) and run with .delay() by the process "
            "holding the devices"
        )
    return devices


current_devices: Any = LocalProxy(_current_devices)


@contextmanager
def bind_devices(devices: DeviceMap) -> Iterator[DeviceMap]:
    token = _bound.set(devices)
    try:
        yield devices
    finally:
        _bound.reset(token)


class ProgressWriter:
    """Throttled writer of a task's progress: <= 1 write per PROGRESS_INTERVAL, last always.

    Writes happen in order, one at a time: either at once (the interval has passed) or from
    the one pending timer, which re-arms itself if a newer event arrived while it wrote.
    """

    def __init__(self, write: Any, interval: float = PROGRESS_INTERVAL) -> None:
        self._write = write
        self._interval = interval
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # serialises writes (order kept)
        self._last_write = -math.inf
        self._pending: dict[str, Any] | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self.writes = 0

    def __call__(self, event: Progress) -> None:
        value = {**event.to_dict(), "fraction": round(event.fraction, 4), "updated": time.time()}
        with self._lock:
            self._pending = value
            if self._timer is not None or self._arm():
                return
        self.flush()

    def _arm(self) -> bool:
        """Under ``_lock``: start the timer if the interval has not passed (True if armed)."""
        wait = self._last_write + self._interval - time.monotonic()
        if wait <= 0 or self._closed:
            return False
        self._timer = threading.Timer(wait, self._on_timer)
        self._timer.daemon = True
        self._timer.start()
        return True

    def _on_timer(self) -> None:
        self.flush()
        with self._lock:
            self._timer = None
            if self._pending is not None and not self._arm():
                now = True
            else:
                now = False
        if now:
            self.flush()

    def flush(self) -> None:
        """Write the pending value now (if any)."""
        with self._write_lock:
            with self._lock:
                value, self._pending = self._pending, None
                if value is None:
                    return
                self._last_write = time.monotonic()
                self.writes += 1
            try:
                self._write(value)
            except Exception:  # noqa: BLE001 - progress is best effort
                log.warning("cannot store task progress", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()


def _app_reference(app: Any) -> str:
    """What ``--app`` needs to find this app: its module name if importable, else its file."""
    from importlib.machinery import PathFinder

    name = app.import_name
    path = getattr(sys.modules.get(name), "__file__", None)
    top = name.split(".")[0]
    importable = name != "__main__" and PathFinder.find_spec(top, sys.path) is not None
    return name if importable or not path else path


def worker_command(app: Any, names: list[str]) -> str:
    """The command line that starts a worker holding ``names`` for this app."""
    app_ref = os.environ.get("FLASK_APP") or _app_reference(app)
    devices = " ".join(f"--device {n}" for n in sorted(names))
    return f"labruntime --app {app_ref} loop {devices}"


def admit(weblab: Any, task_name: str, names: list[str], session_id: str | None) -> str:
    """Check that ``names`` can be used now; returns the pool to queue the task on."""
    from .globals import get_state

    state = get_state()
    device_store = weblab._device_store()
    unknown = [n for n in names if n not in state.config.devices]
    if unknown:
        raise DeviceUnavailableError(
            f"task {task_name} needs device(s) {unknown} that WEBLAB_DEVICES does not define "
            f"(it defines {sorted(state.config.devices)})"
        )
    if device_store.revoked(session_id):
        raise DeviceUnavailableError(
            f"task {task_name} was not started: the session is ending, its devices are being "
            "driven to their safe state"
        )
    holders = device_store.holders(names)
    missing = [n for n, h in holders.items() if h is None]
    if missing:
        raise DeviceUnavailableError(
            f"task {task_name} needs device(s) {missing} but no live worker holds them: start "
            f"`{worker_command(state.app, names)}` (or run task threads in this process: "
            "WEBLAB_TASK_THREADS_PROCESS > 0 makes it hold the devices no worker holds)"
        )
    workers = {h["worker"] for h in holders.values() if h}
    if len(workers) > 1:
        raise DeviceUnavailableError(
            f"task {task_name} needs devices {sorted(names)} held by different workers "
            f"{sorted(workers)}: one task runs in one process; start one worker with all of "
            f"them: `{worker_command(state.app, names)}`"
        )
    unsafe = {n: r for n in names if (r := device_store.last_safe(n)) and not r.get("ok")}
    if unsafe:
        details = "; ".join(f"{n}: {r.get('detail') or r}" for n, r in unsafe.items())
        raise DeviceUnavailableError(
            f"task {task_name} was not started: device(s) {sorted(unsafe)} did not reach their "
            f"safe state last time ({details}). Check the hardware (`labruntime device "
            "status`); the lab is ready again once a safe() succeeds (a worker restart does one)"
        )
    device_store.mark_used(session_id, names, state.config.task_expires)
    return device_pool(names)
