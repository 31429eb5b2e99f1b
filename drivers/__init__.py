"""labruntime.drivers: one way to reach a device, real or simulated.

    from labruntime.drivers import open_device, Console

    with open_device("serial:/dev/ttyUSB0?baudrate=115200") as dev:
        assert has_capability(dev, Console)
        dev.write(b"status\\n")
        print(dev.readline(timeout=2))

Imports neither flask nor redis nor anything from labruntime; drivers load lazily on first use
of their scheme, and so does :class:`SimulatedArduino` (which needs pyserial) on first access.
Error tree: :mod:`.errors`; URL grammar: :mod:`.urls`; schemes: :mod:`.registry`; firmware
files: :mod:`.image`.
"""

from typing import TYPE_CHECKING, Any

from .base import Device, SafeReport
from .capabilities import (
    Console,
    DigitalInput,
    DigitalOutput,
    Programmer,
    ProgramResult,
    capability_names,
    has_capability,
)
from .errors import (
    DeviceBusyError,
    DeviceClosedError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
    DriverError,
    ImageError,
    OperationCancelled,
    ProgrammingError,
    UnknownSchemeError,
    VerifyError,
)
from .image import FirmwareImage, load_image
from .lease import DeviceLease
from .operations import Operation, OperationTracker, Progress
from .registry import (
    known_schemes,
    open_device,
    register_scheme,
    unregister_scheme,
    validate_device_url,
)
from .urls import DeviceURL, parse_device_url

if TYPE_CHECKING:
    from .sim.arduino import SimulatedArduino

#: names served by __getattr__ on first access: name -> module (keeps this import light)
_LAZY = {"SimulatedArduino": ".sim.arduino"}

__all__ = [
    "Console",
    "Device",
    "DeviceBusyError",
    "DeviceClosedError",
    "DeviceIOError",
    "DeviceLease",
    "DeviceTimeoutError",
    "DeviceURL",
    "DeviceURLError",
    "DigitalInput",
    "DigitalOutput",
    "DriverError",
    "FirmwareImage",
    "ImageError",
    "Operation",
    "OperationCancelled",
    "OperationTracker",
    "ProgramResult",
    "Programmer",
    "Progress",
    "ProgrammingError",
    "SafeReport",
    "SimulatedArduino",
    "UnknownSchemeError",
    "VerifyError",
    "capability_names",
    "has_capability",
    "known_schemes",
    "load_image",
    "open_device",
    "parse_device_url",
    "register_scheme",
    "unregister_scheme",
    "validate_device_url",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
