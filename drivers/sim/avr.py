"""``sim:avr``: a board whose AVR runs the student's program, simulated cycle by cycle (simavr).

A stand-in for the lab's real Arduino Uno when the rig is busy or broken, and a way to run a
lab's own tests without hardware: the chip (:class:`~.avr_twin.AvrTwin`) boots Optiboot, is
programmed through the same STK500 protocol and the same ``program()`` as a real board, and
runs what was uploaded in real time (simulated time is paced to the wall clock). The device
has three capabilities::

    board = open_device("sim:avr?mcu=atmega328p")
    board.program(Path("blink.hex"))          # Programmer: the native stk500 driver, on the pty
    led = board.pin(13)                       # DigitalInput: PB5 as the program drives it
    led.wait_for(True, timeout=2)
    board.readline(timeout=1)                 # Console: what the program prints on its UART
    board.write(b"hi\\n")                      # ... and what it reads

Programming path: the chip's UART0 is a pseudo-terminal (``board.tty_path``). ``program()``
opens it (which resets the chip, as an Uno's DTR line does), pulses reset again (the driver's
DTR reset), and talks STK500v1 to the real Optiboot 4.4, which writes the simulated flash with
SPM; the port is closed again afterwards, so between operations ``stk500:<tty_path>?reset=none``
or ``avrdude -c arduino -P <tty_path>`` can program the same chip. While a host holds the port,
what the chip sends goes to that host and not to the console (the serial monitor and the
upload share the port, as on a real board).

URL grammar::

    sim:avr?mcu=atmega328p&f_cpu=16000000&baudrate=115200&bootloader=PATH&startup_ms=65
           &sync_timeout=3&retries=N

``bootloader``: an Intel HEX file to boot instead of the Optiboot 4.4 built from the
``arduino-core-avr`` package's source (e.g. upstream Optiboot 8.3). The twin needs simavr, gcc
and avr-gcc (see :mod:`.avr_build`); :func:`twin_available` says whether it can run here.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..base import open_with_lease
from ..capabilities import console_pattern, console_timeout, take_line
from ..errors import DeviceIOError, DeviceURLError
from ..operations import Operation
from ..parts import get_part
from ..stk500 import Stk500Programmer, sync_options
from ..urls import DeviceURL, opt_float, opt_int, opt_str, parse_device_url, reject_unknown
from .avr_build import BOOTLOADERS, Bootloader, bootloader_from_file, twin_available
from .avr_pins import PinEdge, parse_pin
from .avr_twin import AvrTwin

__all__ = ["GRAMMAR", "SimAvrBoard", "TwinPin", "open_url", "twin_available", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "sim:avr?mcu=atmega328p&f_cpu=16000000&baudrate=115200&bootloader=PATH&startup_ms=65"
    "&sync_timeout=3&retries=N"
)
_OPTIONS = ("mcu", "f_cpu", "baudrate", "bootloader", "startup_ms", "sync_timeout", "retries")
_RESET_SETTLE = 0.05  # seconds between the reset pulse and the first sync, as the DTR reset


class TwinPin:
    """One pin of the twin as the lab sees it (DigitalInput): the level the program drives."""

    def __init__(self, board: SimAvrBoard, name: str | int) -> None:
        self._board = board
        self.port, self.bit = parse_pin(name)
        self.pin_name = f"P{self.port}{self.bit}"

    @property
    def value(self) -> bool:
        self._board._check_open()
        return self._board.twin.level(self.pin_name)

    @property
    def mode(self) -> str:
        """``"out"`` when the program made it an output, else ``"in"``."""
        return self._board.twin.pin_state(self.pin_name)[0]

    def wait_for(self, value: bool, timeout: float | None) -> bool:
        """Block until the pin reads ``value``; False after ``timeout`` s (wall clock)."""
        twin = self._board.twin
        with self._board._operation(f"wait_for {self.pin_name}") as op:
            reached = twin.wait_until(
                lambda: op.cancelled or twin.level(self.pin_name) == bool(value), timeout
            )
            op.check()  # OperationCancelled if safe() cancelled the wait
            return reached and twin.level(self.pin_name) == bool(value)

    def edges(self) -> list[PinEdge]:
        """Every level change so far, in simulated time (for timing checks)."""
        return self._board.twin.edges(self.pin_name)

    def drive(self, level: bool | None) -> None:
        """Drive this pin from outside, as a button would (``None`` releases it)."""
        self._board._check_open()
        self._board.twin.drive(self.pin_name, level)

    def describe(self) -> dict[str, Any]:
        mode, level = self._board.twin.pin_state(self.pin_name)
        return {"pin": self.pin_name, "mode": mode, "value": int(level)}

    def __repr__(self) -> str:
        return f"<TwinPin {self.pin_name} of {self._board.label}>"


class SimAvrBoard(Stk500Programmer):
    """``sim:avr``: Programmer (native STK500 on the twin's pty), pins, and the UART console."""

    scheme = "sim"

    def __init__(
        self, url: str | DeviceURL, *, twin: AvrTwin, timeout: float = 1.0, **kwargs: Any
    ) -> None:
        self.twin = twin
        self.timeout = timeout
        self._console = bytearray()
        self._console_cond = threading.Condition()
        self._pins: dict[str, TwinPin] = {}
        self._listeners: list[Callable[[bytes], None]] = []
        twin.add_output_listener(self._on_output)
        super().__init__(url, port=twin.tty_path, part=get_part(twin.mcu), reset="dtr", **kwargs)
        self._close_port()  # the port is opened for each operation: others may program too

    @property
    def tty_path(self) -> str:
        """The chip's serial port (a pty): for ``stk500:`` or avrdude between operations."""
        return self.twin.tty_path

    # -- programming ------------------------------------------------------------------------
    def _reset(self, op: Operation) -> None:
        # the DTR auto-reset of an Uno: the twin's reset line; the edge is now. The short settle
        # keeps the first GET_SYNC out of Optiboot's 65 ms start-up, as the dtr path does
        self.twin.reset()
        op.wait_cancelled(_RESET_SETTLE)

    def _reset_seconds(self) -> float:
        """Seconds a reset adds (for the estimate): the edge is immediate, then the settle."""
        return _RESET_SETTLE

    def _write(self, op: Operation, source: Any, img: Any, verify: bool) -> None:
        try:
            super()._write(op, source, img, verify)
        finally:
            if not self._in_progmode:
                self._close_port()

    def _drive_safe(self) -> dict[str, Any]:
        self._check_twin()
        state = super()._drive_safe()
        if not self._in_progmode:
            self._close_port()
        released = self.twin.release_driven()  # a button a previous user held
        with self._console_cond:
            dropped = len(self._console)
            self._console.clear()
        state.update(
            {
                "port": "closed" if self._ser is None else "open",
                "console_dropped_bytes": dropped,
                "released_pins": released,
                "running": self.twin.running,
                "sim_seconds": round(self.twin.sim_seconds, 3),
            }
        )
        return state

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.twin.stop()

    def _describe(self) -> dict[str, Any]:
        info = super()._describe()
        info["twin"] = self.twin.describe()
        info["pins"] = [pin.describe() for pin in self._pins.values()]
        return info

    def _check_twin(self) -> None:
        if not self.twin.running:
            raise DeviceIOError(
                f"{self.label}: the twin's simulator process is gone "
                f"({self.twin.log_tail(3) or 'no message'}); open the device again"
            )

    # -- pins -------------------------------------------------------------------------------
    def pin(self, name: str | int) -> TwinPin:
        """The pin ``name`` (``"PB5"``, ``13``, ``"A0"``) as a DigitalInput."""
        self._check_open()
        pin = TwinPin(self, name)
        return self._pins.setdefault(pin.pin_name, pin)

    def input(self, name: str | int) -> TwinPin:
        """Alias of :meth:`pin`, as ``sim:gpio`` boards name their inputs."""
        return self.pin(name)

    @property
    def sim_seconds(self) -> float:
        """Simulated time since the twin was powered on."""
        return self.twin.sim_seconds

    @contextmanager
    def _operation(self, what: str) -> Iterator[Operation]:
        self._check_open()
        with self.ops.operation(what) as op:
            op.on_cancel(self._wake_waiters)
            yield op

    def _wake_waiters(self, _reason: str = "") -> None:
        self.twin.wake()
        self._wake_console()

    # -- Console ----------------------------------------------------------------------------
    def add_output_listener(self, listener: Callable[[bytes], None]) -> None:
        """Also call ``listener(data)`` with what the program prints (the serial monitor);
        it runs in the simulator's reader thread, so it must be quick. Reads are unaffected."""
        self._listeners.append(listener)

    def remove_output_listener(self, listener: Callable[[bytes], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _on_output(self, data: bytes) -> None:
        if self.twin.host_open:
            return  # a programmer (ours or avrdude) holds the port: the bytes are its replies
        for listener in list(self._listeners):
            try:
                listener(data)
            except Exception:  # noqa: BLE001 - a listener never breaks the console
                log.exception("%s: an output listener failed", self.label)
        with self._console_cond:
            self._console += data
            if len(self._console) > 1 << 20:
                del self._console[: len(self._console) - (1 << 20)]
            self._console_cond.notify_all()

    def _wake_console(self) -> None:
        with self._console_cond:
            self._console_cond.notify_all()

    def _wait_console(self, op: Operation, ready: Any, timeout: float | None) -> bool:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._console_cond:
            while not ready():
                op.check()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if not self.twin.running:
                    self._check_twin()
                self._console_cond.wait(min(left, 0.5))
            return True

    def read(self, n: int = 1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes the program printed: when ``n`` arrived or ``timeout`` s passed."""
        with self._operation("read") as op:
            self._wait_console(op, lambda: len(self._console) >= n, timeout)
            with self._console_cond:
                data = bytes(self._console[:n])
                del self._console[:n]
            return data

    def readline(self, timeout: float | None = None) -> bytes:
        """One line including b"\\n", or what arrived before ``timeout`` s passed."""
        with self._operation("readline") as op:
            self._wait_console(op, lambda: b"\n" in self._console, timeout)
            with self._console_cond:
                return take_line(self._console)

    def expect(self, pattern: bytes | str | re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        """Read until ``pattern`` matches; consumes through the match. DeviceTimeoutError if not."""
        regex = console_pattern(pattern)
        found: list[re.Match[bytes]] = []

        def match() -> bool:
            m = regex.search(bytes(self._console))
            if m:
                found.append(m)
            return m is not None

        with self._operation("expect") as op:
            if not self._wait_console(op, match, timeout):
                with self._console_cond:
                    raise console_timeout(self.label, regex, timeout, self._console)
            with self._console_cond:
                del self._console[: found[-1].end()]
            return found[-1]

    def write(self, data: bytes) -> int:
        """Send ``data`` to the program's UART (paced at the baud rate)."""
        self._check_open()
        if isinstance(data, str):
            raise TypeError("write() takes bytes; encode the text first (e.g. text.encode())")
        self.twin.send(bytes(data))
        return len(data)


# -- URLs ---------------------------------------------------------------------------------------
def _options(url: DeviceURL) -> dict[str, Any]:
    if url.target.lower() != "avr":
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: this simulator is 'sim:avr', not 'sim:{url.target}'. "
            f"Grammar: {GRAMMAR}"
        )
    reject_unknown(url, _OPTIONS, GRAMMAR)
    mcu = (opt_str(url, "mcu", "atmega328p", grammar=GRAMMAR) or "atmega328p").lower()
    try:
        mcu = get_part(mcu).name
    except KeyError:
        mcu = ""
    if mcu not in BOOTLOADERS:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: mcu must be one of {', '.join(sorted(BOOTLOADERS))}. "
            f"Grammar: {GRAMMAR}"
        )
    return {
        "mcu": mcu,
        "f_cpu": opt_int(
            url, "f_cpu", 16_000_000, minimum=1_000_000, maximum=20_000_000, grammar=GRAMMAR
        ),
        "baudrate": opt_int(
            url, "baudrate", 115200, minimum=300, maximum=1_000_000, grammar=GRAMMAR
        ),
        "bootloader": opt_str(url, "bootloader", None, grammar=GRAMMAR),
        "startup_ms": opt_float(
            url, "startup_ms", 65.0, minimum=0.0, maximum=1000.0, grammar=GRAMMAR
        ),
        **sync_options(url, GRAMMAR),
    }


def validate(url: str | DeviceURL) -> None:
    """Check a ``sim:avr`` URL without starting anything; DeviceURLError if bad."""
    _options(parse_device_url(url))


def open_url(
    url: str | DeviceURL, *, name: str | None = None, cache_dir: str | Path | None = None
) -> SimAvrBoard:
    """Start a twin, return its board; TwinUnavailableError (naming the fix) if it cannot run."""
    parsed = parse_device_url(url)
    opts = _options(parsed)
    boot: Bootloader | None = None
    if opts["bootloader"]:
        boot = bootloader_from_file(opts["bootloader"], opts["mcu"], cache_dir)
    twin = AvrTwin(
        opts["mcu"],
        opts["f_cpu"],
        opts["baudrate"],
        bootloader=boot,
        startup_ms=opts["startup_ms"],
        cache_dir=cache_dir,
    )
    twin.start()
    # leased under its own key: the pty stays free for an stk500: device (or avrdude) that
    # programs the same chip between this device's operations
    return open_with_lease(
        f"sim:avr:{twin.run_dir}",
        lambda lease: SimAvrBoard(
            parsed,
            twin=twin,
            baudrate=opts["baudrate"],
            sync_timeout=opts["sync_timeout"],
            retries=opts["retries"],
            name=name,
            lease=lease,
        ),
        fresh=True,
        on_failure=twin.stop,
    )
