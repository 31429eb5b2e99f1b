"""The device layer's error tree.

Every error a driver raises is a :class:`DriverError`; each leaf also inherits the closest
built-in exception, so code that only knows the standard library still catches it sensibly::

    DriverError(Exception)
    ├── DeviceBusyError                      another holder has the device's lease
    ├── DeviceIOError(OSError)               the port/pin is missing, gone or failed
    ├── DeviceTimeoutError(TimeoutError)     no answer in time, or an operation's deadline passed
    ├── ProgrammingError                     writing firmware failed (``address`` if known)
    │   └── VerifyError                      read-back differs from the image
    ├── UnknownSchemeError(ValueError)       ``open_device("foo:...")``: lists the known schemes
    ├── DeviceURLError(ValueError)           malformed URL or bad option: shows the grammar
    ├── ImageError(ValueError)               bad firmware file: names the file and line
    ├── OperationCancelled                   an operation was cancelled at a safe point
    └── DeviceClosedError(ValueError)        the device was used after ``close()``
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DeviceBusyError",
    "DeviceClosedError",
    "DeviceIOError",
    "DeviceTimeoutError",
    "DeviceURLError",
    "DriverError",
    "ImageError",
    "OperationCancelled",
    "ProgrammingError",
    "UnknownSchemeError",
    "VerifyError",
]


class DriverError(Exception):
    """Root of every error raised by the device layer."""


class DeviceBusyError(DriverError):
    """The device is held by another process (or another handle in this process).

    ``holder`` is the JSON the holder wrote into the lease file (pid, argv, host, since), or
    None when it could not be read.
    """

    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class DeviceIOError(DriverError, OSError):
    """The device could not be reached: missing port, permission, disconnect, I/O failure."""


class DeviceTimeoutError(DriverError, TimeoutError):
    """The device did not answer in time, or an operation ran past its deadline."""


class ProgrammingError(DriverError):
    """Programming the device failed. ``address`` is the flash address involved, if known."""

    def __init__(self, message: str, address: int | None = None) -> None:
        super().__init__(message)
        self.address = address


class VerifyError(ProgrammingError):
    """The flash read back differs from the image (``address`` = first differing byte)."""


class UnknownSchemeError(DriverError, ValueError):
    """The device URL's scheme is not registered; the message lists the known ones."""


class DeviceURLError(DriverError, ValueError):
    """A device URL is malformed or has an unknown/bad option; the message shows the grammar.

    When the URL's own parser raised it, ``url``, ``scheme`` and ``problem`` are set, so the
    registry can restate the problem with the grammar of that scheme.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        scheme: str | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.scheme = scheme
        self.problem = problem


class ImageError(DriverError, ValueError):
    """A firmware image is unusable (bad record, checksum, too big); names file and line."""


class OperationCancelled(DriverError):
    """An operation was cancelled; raised at the next safe point after ``cancel()``."""


class DeviceClosedError(DriverError, ValueError):
    """The device was used after it was closed."""
