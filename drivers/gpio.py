"""``gpio:``: one GPIO line (real or mock pin) on gpiozero.

``gpio:PIN?mode=out&active_high=true&safe=0&factory=mock``
``gpio:PIN?mode=in&pull=down|up|none&active_high=true&bounce=0.01&factory=mock``

* ``PIN``: any name gpiozero takes: ``17``, ``GPIO17``, ``BCM17``, ``BOARD11``, ``J8:11``.
* ``mode``: ``out`` (default; a DigitalOutput) or ``in`` (a DigitalInput with edge waits).
* ``active_high``: whether "on"/active is the high level (default true). For inputs it is
  only allowed with ``pull=none`` (with a pull resistor gpiozero derives it: pull=up means
  active low).
* ``safe``: the *logical* value (0 = off, 1 = on) an output is driven to at open (so it is
  also the initial value), by ``safe()`` and before close; ``safe()`` drives it actively and
  reads it back (never close-and-float).
* ``pull``: an input's pull resistor (default down); ``bounce``: debounce seconds.
* ``factory``: ``mock``, ``lgpio``, ``rpigpio``, ``pigpio`` or ``native``. Without it, gpiozero's
  default (``$GPIOZERO_PIN_FACTORY``, else the first that works). ``mock`` pins live in this
  process: one shared MockFactory (never installed as gpiozero's global factory), so the
  lease is gpiozero's own pin reservation. Real pins are leased per process under
  ``gpio:<canonical name>``.

``sim:gpio`` (a simulated board with wired pairs) is in :mod:`.sim.gpio`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import warnings
from typing import Any

from .base import Device
from .errors import DeviceIOError, DeviceURLError
from .gpio_lines import InputLine, OutputLine, gpiozero_errors
from .lease import DeviceLease
from .urls import DeviceURL, opt_bool, opt_choice, opt_float, reject_unknown

__all__ = ["GpioInputDevice", "GpioOutputDevice", "open_url", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "gpio:PIN?mode=out&active_high=true&safe=0&factory=mock | "
    "gpio:PIN?mode=in&pull=down|up|none&active_high=true&bounce=SECONDS&factory=mock "
    "(PIN as gpiozero names it: 17, GPIO17, BOARD11)"
)
_OUT_OPTIONS = {"mode", "active_high", "safe", "factory"}
_IN_OPTIONS = {"mode", "active_high", "pull", "bounce", "factory"}
_FACTORIES = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
    "mock": "gpiozero.pins.mock:MockFactory",
}
_factory_lock = threading.Lock()
_factories: dict[str, Any] = {}


def shared_factory(name: str | None) -> Any:
    """The pin factory for ``factory=name`` (None: gpiozero's default), made once per process."""
    from gpiozero import Device as ZeroDevice

    with _factory_lock:
        fallbacks: list[str] = []
        try:
            if name is None:
                # gpiozero warns once per factory it skips: say it in our error instead
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        ZeroDevice.ensure_pin_factory()
                    finally:
                        fallbacks = [str(w.message) for w in caught]
                for text in fallbacks:
                    log.debug("gpiozero: %s", text)
                return ZeroDevice.pin_factory
            if name not in _factories:
                module, cls = _FACTORIES[name].split(":")
                _factories[name] = getattr(importlib.import_module(module), cls)()
            return _factories[name]
        except Exception as exc:  # gpiozero's factories fail in many ways
            which = f"pin factory {name!r}" if name else "gpiozero's default pin factory"
            tried = f" ({'; '.join(fallbacks)})" if fallbacks else ""
            raise DeviceIOError(
                f"{which} is not usable here: {exc}{tried}. On a machine without GPIO use "
                "factory=mock (or sim:gpio); on a Pi check GPIOZERO_PIN_FACTORY and that "
                "the user is in the 'gpio' group"
            ) from exc


def find_pin(factory: Any, spec: str, url: DeviceURL, grammar: str) -> str:
    """The canonical name (GPIO17) of ``spec`` on ``factory``'s board."""
    for _header, info in factory.board_info.find_pin(spec):
        if "gpio" not in info.interfaces:
            raise DeviceURLError(
                f"bad device URL {str(url)!r}: {spec!r} is the {info.name} pin of the header, "
                f"not a GPIO line; pick a GPIO (e.g. 17, GPIO17, BOARD11). {grammar}"
            )
        return info.name
    raise DeviceURLError(f"bad device URL {str(url)!r}: {spec!r} is not a GPIO pin name. {grammar}")


class GpioOptions:
    """The checked options of a gpio: URL (shared by validate and open)."""

    def __init__(self, url: DeviceURL, *, grammar: str = GRAMMAR, sim: bool = False) -> None:
        self.mode = "out" if sim else opt_choice(url, "mode", ["out", "in"], "out", grammar=grammar)
        if not sim:
            reject_unknown(url, _OUT_OPTIONS if self.mode == "out" else _IN_OPTIONS, grammar)
        self.safe = bool(opt_bool(url, "safe", False, grammar=grammar))
        self.pull = opt_choice(url, "pull", ["down", "up", "none"], "down", grammar=grammar)
        active_high = opt_bool(url, "active_high", None, grammar=grammar)
        if "active_high" in url.options and self.pull != "none" and self.mode == "in" and not sim:
            raise DeviceURLError(
                f"bad device URL {str(url)!r}: active_high is only allowed on inputs with "
                f"pull=none (pull=up means active low, pull=down active high). {grammar}"
            )
        self.active_high = True if active_high is None else active_high
        self.bounce = opt_float(url, "bounce", None, minimum=0.0, grammar=grammar)
        self.factory = (
            None if sim else opt_choice(url, "factory", list(_FACTORIES), grammar=grammar)
        )

    def make_output(self, factory: Any, pin: str, owner: Device) -> OutputLine:
        from gpiozero import DigitalOutputDevice

        zero = DigitalOutputDevice(
            pin, active_high=self.active_high, initial_value=self.safe, pin_factory=factory
        )
        return OutputLine(zero, safe_value=self.safe, owner=owner)

    def make_input(self, factory: Any, pin: str, owner: Device) -> InputLine:
        from gpiozero import DigitalInputDevice

        pull_up = {"up": True, "down": False, "none": None}[self.pull]
        zero = DigitalInputDevice(
            pin,
            pull_up=pull_up,
            active_state=self.active_high if pull_up is None else None,
            bounce_time=self.bounce,
            pin_factory=factory,
        )
        return InputLine(zero, owner=owner)


class _GpioDevice(Device):
    scheme = "gpio"

    def __init__(self, url: DeviceURL, *, name: str | None, lease: DeviceLease | None) -> None:
        super().__init__(url, name=name, lease=lease)
        self.line: Any = None

    @property
    def pin(self) -> str:
        return self.line.pin_name

    def _close(self) -> None:
        if self.line is not None:
            self.line.close()

    def _drive_safe(self) -> dict[str, Any]:
        return self.line.drive_safe()

    def _describe(self) -> dict[str, Any]:
        return self.line.describe()


class GpioOutputDevice(_GpioDevice):
    """``gpio:PIN?mode=out``: one output line (DigitalOutput)."""

    def on(self) -> None:
        self.line.on()

    def off(self) -> None:
        self.line.off()

    @property
    def value(self) -> bool:
        return self.line.value

    @value.setter
    def value(self, value: bool) -> None:
        self.line.value = value


class GpioInputDevice(_GpioDevice):
    """``gpio:PIN?mode=in``: one input line (DigitalInput) with edge waits."""

    @property
    def value(self) -> bool:
        return self.line.value

    def wait_for(self, value: bool, timeout: float | None) -> bool:
        return self.line.wait_for(value, timeout)

    def wait_for_active(self, timeout: float | None) -> bool:
        return self.line.wait_for(True, timeout)

    def wait_for_inactive(self, timeout: float | None) -> bool:
        return self.line.wait_for(False, timeout)


def validate(url: DeviceURL) -> None:
    """Check a gpio: URL's options and pin name without touching hardware."""
    GpioOptions(url)
    find_pin(shared_factory("mock"), url.target, url, f"Grammar: {GRAMMAR}")


def open_url(url: DeviceURL, *, name: str | None = None) -> Device:
    """Open ``gpio:PIN?...``; the output is driven to its safe level before returning."""
    opts = GpioOptions(url)
    factory = shared_factory(opts.factory)
    pin = find_pin(factory, url.target, url, f"Grammar: {GRAMMAR}")
    lease = None if opts.factory == "mock" else DeviceLease.acquire(f"gpio:{pin}")
    cls = GpioOutputDevice if opts.mode == "out" else GpioInputDevice
    device = cls(url, name=name, lease=lease)
    try:
        with gpiozero_errors(str(url), _holder()):
            if opts.mode == "out":
                device.line = opts.make_output(factory, pin, device)
            else:
                device.line = opts.make_input(factory, pin, device)
        device.safe()
    except BaseException:
        device.close(safe=False)
        raise
    return device


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "argv": list(sys.argv)}
