"""GPIO lines on gpiozero devices, shared by ``gpio:`` and ``sim:gpio`` (see :mod:`.gpio`).

An :class:`OutputLine` (DigitalOutput) has a declared safe value that ``drive_safe()`` drives
actively and reads back; an :class:`InputLine` (DigitalInput) has edge waits that block on a
condition variable fed by gpiozero's edge callbacks, tracked as operations of the owning
device so ``safe()`` can cancel them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import DeviceBusyError, DeviceIOError, DeviceURLError

if TYPE_CHECKING:
    from .base import Device

__all__ = ["InputLine", "OutputLine", "gpiozero_errors"]

log = logging.getLogger(__name__)


@contextmanager
def gpiozero_errors(what: str, holder: dict[str, Any] | None = None) -> Iterator[None]:
    """Translate gpiozero's exceptions into the DriverError tree."""
    from gpiozero.exc import GPIOPinInUse, GPIOZeroError, PinInvalidPin

    try:
        yield
    except GPIOPinInUse as exc:
        raise DeviceBusyError(
            f"{what}: the pin is busy: {exc}. Close the other handle on it first",
            holder=holder,
        ) from exc
    except PinInvalidPin as exc:
        raise DeviceURLError(f"{what}: {exc}") from exc
    except (GPIOZeroError, OSError) as exc:
        raise DeviceIOError(f"{what}: GPIO failure: {exc}") from exc


class OutputLine:
    """One output pin with a declared safe (logical) value."""

    def __init__(self, zero: Any, *, safe_value: bool, owner: Device) -> None:
        self._zero = zero
        self._owner = owner
        self.safe_value = bool(safe_value)
        self.pin_name: str = zero.pin.info.name

    def on(self) -> None:
        self.value = True

    def off(self) -> None:
        self.value = False

    @property
    def value(self) -> bool:
        self._owner._check_open()
        return bool(self._zero.value)

    @value.setter
    def value(self, value: bool) -> None:
        self._owner._check_open()
        with gpiozero_errors(f"{self._owner.label} {self.pin_name}"):
            self._zero.value = bool(value)

    @property
    def level(self) -> bool:
        """The physical level (True = high) of the pin."""
        return bool(self._zero.pin.state)

    def drive_safe(self) -> dict[str, Any]:
        """Drive the safe value actively, read the pin back; DeviceIOError if it disagrees."""
        with gpiozero_errors(f"{self._owner.label} {self.pin_name}"):
            self._zero.value = self.safe_value
            level = self.level
        expected = self.safe_value == bool(self._zero.active_high)
        if level != expected:
            raise DeviceIOError(
                f"{self.pin_name} reads {'high' if level else 'low'} after being driven to its "
                f"safe value {int(self.safe_value)}; check the wiring for a short"
            )
        return {
            "pin": self.pin_name,
            "mode": "out",
            "value": int(self.safe_value),
            "level": int(level),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "pin": self.pin_name,
            "mode": "out",
            "value": int(bool(self._zero.value)),
            "safe_value": int(self.safe_value),
            "active_high": bool(self._zero.active_high),
        }

    def close(self) -> None:
        self._zero.close()


class InputLine:
    """One input pin with edge waits that the owning device's ``safe()`` can cancel."""

    def __init__(self, zero: Any, *, owner: Device) -> None:
        self._zero = zero
        self._owner = owner
        self._cond = threading.Condition()
        self.pin_name: str = zero.pin.info.name
        zero.when_activated = self._changed
        zero.when_deactivated = self._changed

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def value(self) -> bool:
        self._owner._check_open()
        return bool(self._zero.value)

    def wait_for(self, value: bool, timeout: float | None) -> bool:
        """Block until the input's logical value is ``value``; False after ``timeout`` s.

        Raises OperationCancelled if the device's ``safe()``/``close()`` cancels the wait.
        """
        self._owner._check_open()
        target = bool(value)
        edge = "active" if target else "inactive"
        with self._owner.ops.operation(f"{self.pin_name} wait_for_{edge}") as op:
            op.on_cancel(lambda _reason: self._changed())
            with self._cond:
                reached = self._cond.wait_for(
                    lambda: bool(self._zero.value) == target or op.cancelled, timeout
                )
            op.check()
            return bool(reached) and bool(self._zero.value) == target

    def wait_for_active(self, timeout: float | None) -> bool:
        return self.wait_for(True, timeout)

    def wait_for_inactive(self, timeout: float | None) -> bool:
        return self.wait_for(False, timeout)

    def drive_safe(self) -> dict[str, Any]:
        """Inputs drive nothing; report what the pin reads."""
        return {"pin": self.pin_name, "mode": "in", "value": int(bool(self._zero.value))}

    def describe(self) -> dict[str, Any]:
        return {
            "pin": self.pin_name,
            "mode": "in",
            "value": int(bool(self._zero.value)),
            "pull_up": self._zero.pull_up,
        }

    def close(self) -> None:
        self._zero.close()
        self._changed()
