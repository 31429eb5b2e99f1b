"""Small capability interfaces a driver implements (in the spirit of labgrid's protocols).

Code that uses a device asks for a capability, not a class::

    if has_capability(dev, Programmer):
        dev.program(image, progress=print)

The protocols are ``runtime_checkable``, so ``isinstance(dev, Console)`` works as well (it
checks that the methods exist, not their signatures).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import DeviceTimeoutError
from .operations import CancelSource, ProgressCallback

__all__ = [
    "CAPABILITIES",
    "Console",
    "DigitalInput",
    "DigitalOutput",
    "ProgramResult",
    "Programmer",
    "capability_names",
    "console_pattern",
    "console_timeout",
    "has_capability",
    "take_line",
]


@dataclass
class ProgramResult:
    """What ``Programmer.program`` did: bytes written, whether they were verified, how long."""

    bytes: int
    verified: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Console(Protocol):
    """A byte stream with timeouts (a serial port, a socket, a simulator's tty)."""

    def read(self, n: int = 1, timeout: float | None = None) -> bytes: ...

    def write(self, data: bytes) -> int: ...

    def readline(self, timeout: float | None = None) -> bytes: ...

    def expect(self, pattern: bytes | str | re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        """Read until ``pattern`` matches; DeviceTimeoutError (with what was read) if not."""
        ...


def console_pattern(pattern: bytes | str | re.Pattern[bytes]) -> re.Pattern[bytes]:
    """The regex of a :meth:`Console.expect` pattern (a str is matched as its UTF-8 bytes)."""
    if isinstance(pattern, str):
        pattern = pattern.encode("utf-8")
    return pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)


def take_line(buf: bytearray) -> bytes:
    """Remove and return the first line of ``buf`` including b"\\n" (all of it if none)."""
    end = buf.find(b"\n")
    end = len(buf) if end < 0 else end + 1
    data = bytes(buf[:end])
    del buf[:end]
    return data


def console_timeout(
    label: str, regex: re.Pattern[bytes], timeout: float, buf: bytearray
) -> DeviceTimeoutError:
    """The error of a :meth:`Console.expect` that timed out, with the last bytes received."""
    return DeviceTimeoutError(
        f"{label}: {regex.pattern!r} did not appear within {timeout:g} s; "
        f"last bytes received: {bytes(buf[-200:])!r}"
    )


@runtime_checkable
class DigitalOutput(Protocol):
    """One output line. ``value`` is the logical level (True = active)."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    @property
    def value(self) -> bool: ...

    @value.setter
    def value(self, value: bool) -> None: ...


@runtime_checkable
class DigitalInput(Protocol):
    """One input line with edge waits."""

    @property
    def value(self) -> bool: ...

    def wait_for(self, value: bool, timeout: float | None) -> bool:
        """Block until the input reads ``value``; False if ``timeout`` seconds pass first."""
        ...


@runtime_checkable
class Programmer(Protocol):
    """Something that writes a firmware image into a device."""

    def program(
        self,
        image: Any,
        *,
        verify: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelSource = None,
        timeout: float | None = None,
    ) -> ProgramResult: ...

    def estimate_seconds(self, image: Any, *, verify: bool = True) -> float: ...


#: Every capability by the name describe() uses for it.
CAPABILITIES: dict[str, type] = {
    "console": Console,
    "digital_output": DigitalOutput,
    "digital_input": DigitalInput,
    "programmer": Programmer,
}


def has_capability(device: object, capability: type) -> bool:
    """True if ``device`` implements ``capability`` (one of the protocols above)."""
    return isinstance(device, capability)


def capability_names(device: object) -> list[str]:
    """The names (keys of CAPABILITIES) of every capability ``device`` implements."""
    return [name for name, proto in CAPABILITIES.items() if isinstance(device, proto)]
