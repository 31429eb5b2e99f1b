"""``current_devices``: inside a task declared with ``@weblab.task(devices=[...])``, the
opened devices it declared, by name (the runner binds them while the task runs)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from werkzeug.local import LocalProxy

from labruntime.errors import NoContextError

if TYPE_CHECKING:  # the device layer loads only when a device is used
    from labruntime.drivers import Device

__all__ = ["DeviceMap", "bind_devices", "current_devices"]


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
