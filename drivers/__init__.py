"""labruntime.drivers: one way to reach a device, real or simulated.

    from labruntime.drivers import open_device, Console

    with open_device("serial:/dev/ttyUSB0?baudrate=115200") as dev:
        assert has_capability(dev, Console)
        dev.write(b"status\\n")
        print(dev.readline(timeout=2))

Imports neither flask nor redis nor anything from labruntime; drivers load lazily on first use
of their scheme. Error tree: :mod:`.errors`; URL grammar: :mod:`.urls`; schemes: :mod:`.registry`.
"""

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
    "ImageError",
    "Operation",
    "OperationCancelled",
    "OperationTracker",
    "ProgramResult",
    "Programmer",
    "Progress",
    "ProgrammingError",
    "SafeReport",
    "UnknownSchemeError",
    "VerifyError",
    "capability_names",
    "has_capability",
    "known_schemes",
    "open_device",
    "parse_device_url",
    "register_scheme",
    "unregister_scheme",
    "validate_device_url",
]
