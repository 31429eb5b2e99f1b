"""Native STK500v1 programmer: an Arduino-style board behind its Optiboot bootloader.

URL grammar::

    stk500:PORT?baudrate=115200&part=atmega328p&reset=dtr&sync_timeout=3&retries=N

* ``PORT``: a device node (``/dev/ttyACM0``) or anything pyserial's ``serial_for_url`` takes
  (``rfc2217://pi-7:4001``, ``socket://host:port``).
* ``baudrate``: the bootloader's rate (115200 for Optiboot on an Uno, 57600 on old Nanos).
* ``part``: the AVR on the board (``atmega328p``, ``atmega168``, ``atmega2560``...; avrdude's
  ``m328p`` works too); its signature is checked before anything is written.
* ``reset``: ``dtr`` (default: pulse DTR/RTS, the Arduino auto-reset; ignored where the port
  has no modem lines), ``none``, or a device URL such as ``gpio:4`` (write ``gpio:4%3F
  active_high%3Dfalse`` for a pin wired straight to the active-low RESET): the line is turned
  on for ``reset_pulse`` seconds, then off. The GPIO device is opened (and leased) with this one.
* ``sync_timeout``: seconds to get the bootloader's attention (default 3); ``retries``: cap on
  the number of sync attempts within that time.

``program(image)`` resets the board and syncs (resetting again every 3 failed attempts),
checks the signature, enters programming mode, writes page by page (each page a critical
section, each boundary a safe point), reads every page back and compares, and leaves
programming mode. ``safe()`` leaves programming mode if an
operation left the board in it and releases reset; it closes nothing. A port that vanishes
mid-operation gives DeviceIOError; the next operation reopens it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import serial

from .base import open_with_lease
from .errors import (
    DeviceBusyError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
    DriverError,
    ProgrammingError,
    VerifyError,
)
from .image import FirmwareImage
from .lease import path_key
from .operations import Operation
from .parts import Part, get_part
from .programming import ImageProgrammer
from .serial_ports import open_serial
from .stk500_protocol import PAGE_OVERHEAD, ProtocolError, ProtocolTimeout, Stk500Link
from .urls import DeviceURL, opt_float, opt_int, opt_str, parse_device_url, reject_unknown

__all__ = ["GRAMMAR", "Stk500Programmer", "open_url", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "stk500:PORT?baudrate=115200&part=atmega328p&reset=dtr|none|gpio:N"
    "&reset_pulse=0.1&sync_timeout=3&retries=N"
)
_OPTIONS = ("baudrate", "part", "reset", "reset_pulse", "sync_timeout", "retries")
_SYNC_ATTEMPT = 0.2  # seconds to wait for one GET_SYNC reply
_SAFE_LEAVE_TIMEOUT = 0.5  # seconds safe() waits for the reply to LEAVE_PROGMODE
_RESET_EVERY = 3  # sync attempts between two resets of the board
#: bytes moved outside the pages: sync 4, signature 7, enter 4, leave 4
_FIXED_BYTES = 19


class Stk500Programmer(ImageProgrammer):
    """The Programmer capability over STK500v1 (see the module docstring)."""

    scheme = "stk500"
    #: extra seconds a real chip needs per page (erase + write); the simulator sets 0
    page_write_seconds = 0.009

    def __init__(
        self,
        url: str | DeviceURL,
        *,
        port: str,
        baudrate: int = 115200,
        part: Part | str = "atmega328p",
        reset: str = "dtr",
        reset_pulse: float = 0.1,
        sync_timeout: float = 3.0,
        retries: int | None = None,
        name: str | None = None,
        lease: Any = None,
    ) -> None:
        super().__init__(url, name=name, lease=lease)
        self.port = port
        self.baudrate = baudrate
        self.part = part if isinstance(part, Part) else get_part(part)
        self.reset_mode = reset
        self.reset_pulse = reset_pulse
        self.sync_timeout = sync_timeout
        self.retries = retries
        self.byte_time = 10.0 / baudrate
        self.reply_timeout = max(1.0, 20 * (self.part.page_size + PAGE_OVERHEAD) * self.byte_time)
        self._io_lock = threading.Lock()
        self._ser: Any = None
        self._in_progmode = False
        self._reset_device: Any = None
        self._open_port()
        if reset not in ("dtr", "none"):
            try:
                self._reset_device = _open_reset_device(reset, name)
            except BaseException:
                self._close_port()
                raise

    @property
    def reset_line(self) -> Any:
        """The device driving reset when ``reset=`` is a device URL, else None."""
        return self._reset_device

    # -- port -------------------------------------------------------------------------------
    def _open_port(self) -> Any:
        if self._ser is None:
            settings: dict[str, Any] = {
                "baudrate": self.baudrate,
                "timeout": self.reply_timeout,
                "write_timeout": 5,
            }
            if "://" not in self.port:
                settings["exclusive"] = True  # a port screen or minicom holds is DeviceBusyError
            self._ser = open_serial(
                self.port, settings, f"serial port {self.port!r} for {self.label}"
            )
        return self._ser

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                log.debug("closing %s failed", self.port, exc_info=True)

    # -- Programmer (program() and estimate_seconds() come from ImageProgrammer) ------------
    def _estimate(self, img: FirmwareImage, verify: bool) -> float:
        """Line time of every byte moved (pages once, twice with verify), plus overheads."""
        pages = len(img.pages(self.part.page_size))
        moved = (2 if verify else 1) * pages * (self.part.page_size + PAGE_OVERHEAD)
        reset = self.reset_pulse * 1.5 if self.reset_mode != "none" else 0.0
        line = (moved + _FIXED_BYTES) * self.byte_time
        return line + pages * self.page_write_seconds + reset + 0.05

    def _check_image(self, img: FirmwareImage) -> None:
        img.check_fits(self.part)  # before touching the board

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._io_lock.acquire(blocking=False):
            raise DeviceBusyError(f"{self.label} is already programming; wait for it to finish")
        try:
            yield
        finally:
            self._io_lock.release()

    def _write(self, op: Operation, source: Any, img: FirmwareImage, verify: bool) -> None:
        pages = img.pages(self.part.page_size)
        self._before_program(pages)
        self._run(op, img, pages, verify)

    def _before_program(self, pages: list[tuple[int, bytes]]) -> None:
        """Hook for subclasses (the simulator learns the page count here)."""

    def _run(
        self, op: Operation, img: FirmwareImage, pages: list[tuple[int, bytes]], verify: bool
    ) -> None:
        stage, address = "opening the port", None
        try:
            link = Stk500Link(self._open_port())
            stage = "syncing with the bootloader"
            self._sync(op, link)
            stage = "checking the signature"
            self._check_signature(link)
            stage = "entering programming mode"
            link.enter_progmode()
            self._in_progmode = True
            total = len(pages)
            stage = "writing"
            for done, (address, data) in enumerate(pages, start=1):
                op.check()
                with op.critical():
                    link.write_page(address, data)
                op.report("write", done, total)
            if verify:
                stage = "verifying"
                for done, (address, data) in enumerate(pages, start=1):
                    op.check()
                    got = link.read_page(address, len(data))
                    if got != data:
                        self._leave(link)
                        raise _verify_error(self.label, address, data, got)
                    op.report("verify", done, total)
            stage, address = "leaving programming mode", None
            self._leave(link)
        except DriverError:
            raise
        except ProtocolTimeout as exc:
            raise DeviceTimeoutError(
                f"{self.label}: {exc} on {self.port} (no reply within "
                f"{self.reply_timeout:g} s); check the cable and that the board still has power"
            ) from exc
        except ProtocolError as exc:
            raise ProgrammingError(f"{self.label}: {exc}", address=address) from exc
        except (serial.SerialException, OSError) as exc:
            self._close_port()  # _in_progmode stays as it was: safe() finds out
            where = f" at 0x{address:X}" if address is not None else ""
            raise DeviceIOError(
                f"{self.label}: the port {self.port} failed while {stage}{where}: {exc}. The "
                "board may have been unplugged or reset; check the USB cable and power. The "
                "next operation reopens the port"
            ) from exc
        finally:
            if self._in_progmode and self._ser is not None and stage != "leaving programming mode":
                self._leave_quietly()

    def _leave(self, link: Stk500Link) -> None:
        link.leave_progmode()
        self._in_progmode = False

    def _leave_quietly(self) -> None:
        """Try to leave programming mode; on failure ``_in_progmode`` stays True (the truth)."""
        try:
            self._leave(Stk500Link(self._ser))
        except (ProtocolError, serial.SerialException, OSError) as exc:
            log.warning("%s: could not leave programming mode: %s", self.label, exc)

    def _leave_for_safe(self) -> None:
        """Leave programming mode (reopening the port if needed); DeviceIOError if it fails."""
        try:
            ser = self._open_port()
            ser.reset_input_buffer()  # a late reply to a timed-out command
            ser.timeout = min(self.reply_timeout, _SAFE_LEAVE_TIMEOUT)
            try:
                self._leave(Stk500Link(ser))
            finally:
                ser.timeout = self.reply_timeout
        except (DriverError, ProtocolError, serial.SerialException, OSError) as exc:
            if not isinstance(exc, ProtocolError | DriverError):
                self._close_port()
            raise DeviceIOError(
                f"{self.label}: the board may still be in programming mode on {self.port}: "
                f"leaving it failed ({exc}). Reset the board (its reset button, or unplug and "
                "plug it back), check the cable, then drive it safe again"
            ) from exc

    def _reset(self, op: Operation) -> None:
        if self.reset_mode == "none":
            return
        if self._reset_device is not None:
            self._reset_device.on()
            op.wait_cancelled(self.reset_pulse)
            self._reset_device.off()
            return
        ser = self._ser
        try:
            ser.dtr = False
            ser.rts = False
        except (OSError, serial.SerialException):
            log.debug("%s: no DTR/RTS on %s; skipping the reset pulse", self.label, self.port)
            return
        op.wait_cancelled(self.reset_pulse)
        ser.dtr = True
        ser.rts = True
        op.wait_cancelled(0.05)

    def _drain(self) -> None:
        """Read and drop input until the line is quiet (bounded: at most ~0.5 s)."""
        ser = self._ser
        saved = ser.timeout
        ser.timeout = max(0.02, 40 * self.byte_time)
        try:
            deadline = time.monotonic() + 0.5
            while ser.read(4096) and time.monotonic() < deadline:
                pass
        finally:
            ser.timeout = saved

    def _sync(self, op: Operation, link: Stk500Link) -> None:
        ser = self._ser
        deadline = time.monotonic() + self.sync_timeout
        attempts = 0
        try:
            while True:
                op.check()
                left = deadline - time.monotonic()
                if left <= 0 or (self.retries is not None and attempts >= self.retries):
                    break
                if attempts % _RESET_EVERY == 0:
                    # Optiboot listens only briefly after a reset, and a garbled command makes
                    # it start the sketch: reset again every few attempts (avrdude: each one)
                    self._reset(op)
                ser.timeout = min(_SYNC_ATTEMPT, max(0.01, deadline - time.monotonic()))
                attempts += 1
                if link.sync_once():
                    # An INSYNC OK may be stale: a late answer to an earlier attempt, or the
                    # reply to the last command of a holder killed mid-operation (its bytes may
                    # even have swallowed our GET_SYNC). As avrdude does: drain the line until
                    # it is quiet, then sync again; only that second answer proves we are in step.
                    self._drain()
                    if link.sync_once():
                        log.debug("%s: in sync after %d attempt(s)", self.label, attempts)
                        return
                    log.debug("%s: the first INSYNC was stale; syncing again", self.label)
        finally:
            ser.timeout = self.reply_timeout
        raise DeviceTimeoutError(
            f"{self.label}: no answer from the bootloader on {self.port} at {self.baudrate} "
            f"baud ({attempts} sync attempts in {self.sync_timeout:g} s). Check that the port "
            "is this board's, that the baud rate matches its bootloader (115200 for Optiboot "
            "on an Uno, 57600 on older Nanos), that the board has a bootloader, and that reset "
            "works (DTR auto-reset or the reset= wiring): a running sketch ignores the programmer"
        )

    def _check_signature(self, link: Stk500Link) -> None:
        sig = link.read_signature()
        if sig != self.part.signature:
            from .parts import PARTS

            guess = next((p.name for p in PARTS.values() if p.signature == sig), None)
            hint = f"it looks like an {guess}: set part={guess}" if guess else "check part="
            raise ProgrammingError(
                f"{self.label}: device signature {sig.hex()} does not match part "
                f"{self.part.name} ({self.part.signature.hex()}); {hint}"
            )

    # -- Device hooks -----------------------------------------------------------------------
    def _drive_safe(self) -> dict[str, Any]:
        # an operation that ignored its cancel still holds the port: do not talk over it
        if not self._io_lock.acquire(timeout=self.reply_timeout + 1):
            raise DeviceBusyError(f"{self.label}: an operation still holds the port")
        try:
            try:
                if self._in_progmode:
                    self._leave_for_safe()
            finally:
                if self._reset_device is not None:
                    self._reset_device.off()
        finally:
            self._io_lock.release()
        return {
            "progmode": self._in_progmode,
            "reset": "released",
            "port": "open" if self._ser is not None else "closed",
        }

    def _close(self) -> None:
        self._close_port()
        if self._reset_device is not None:
            self._reset_device.close()

    def _describe(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "baudrate": self.baudrate,
            "part": self.part.to_dict(),
            "reset": self.reset_mode,
            "last_result": None if self.last_result is None else self.last_result.to_dict(),
        }


def _verify_error(label: str, page: int, wrote: bytes, got: bytes) -> VerifyError:
    offset = next(i for i, (a, b) in enumerate(zip(wrote, got, strict=True)) if a != b)
    differ = sum(a != b for a, b in zip(wrote, got, strict=True))
    address = page + offset
    return VerifyError(
        f"{label}: verify failed at 0x{address:04X}: wrote 0x{wrote[offset]:02X}, read back "
        f"0x{got[offset]:02X} ({differ} byte(s) differ in the page at 0x{page:04X}). The flash "
        "may be worn or the bootloader protected that area; program again, or try another board",
        address=address,
    )


def _open_reset_device(spec: str, name: str | None) -> Any:
    from .capabilities import DigitalOutput
    from .registry import open_device

    device = open_device(spec, name=f"{name or 'stk500'} reset")
    if not isinstance(device, DigitalOutput):
        kinds = ", ".join(device.capabilities()) or "no capability"
        device.close()
        raise _bad_reset(spec, f"it opens a device with {kinds}, not a digital output")
    return device


def _bad_reset(spec: str, why: str) -> DeviceURLError:
    return DeviceURLError(
        f"bad option reset={spec!r}: {why}. reset= takes dtr, none, or the URL of a digital "
        f"output such as gpio:4 (percent-encode its options: gpio:4%3Factive_high%3Dfalse). "
        f"Grammar: {GRAMMAR}"
    )


def _check_reset_url(spec: str) -> None:
    """Refuse, without opening anything, a reset= URL that cannot be a digital output."""
    from .registry import validate_device_url

    parsed = validate_device_url(spec)
    kind = parsed.scheme if parsed.scheme != "sim" else f"sim:{parsed.target.lower()}"
    if kind in _NOT_OUTPUTS:
        raise _bad_reset(spec, f"a {kind} device is {_NOT_OUTPUTS[kind]}, not a digital output")
    if kind == "gpio" and parsed.options.get("mode", "out").lower() == "in":
        raise _bad_reset(spec, "mode=in makes that pin an input; drop mode=in")


#: built-in schemes that never give a DigitalOutput (others are checked when opened)
_NOT_OUTPUTS = {
    "serial": "a console",
    "stk500": "a programmer",
    "command": "a programmer",
    "sim:arduino": "a programmer",
}


# -- URLs ---------------------------------------------------------------------------------------
def _options(url: DeviceURL) -> dict[str, Any]:
    reject_unknown(url, _OPTIONS, GRAMMAR)
    baud = opt_int(url, "baudrate", 115200, minimum=300, maximum=4_000_000, grammar=GRAMMAR)
    try:
        part = get_part(opt_str(url, "part", "atmega328p", grammar=GRAMMAR) or "atmega328p")
    except KeyError as exc:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: {exc.args[0]}. Grammar: {GRAMMAR}"
        ) from None
    reset = opt_str(url, "reset", "dtr", grammar=GRAMMAR) or "dtr"
    if reset.lower() in ("dtr", "none"):
        reset = reset.lower()
    elif ":" not in reset:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: reset={reset!r} must be dtr, none or a device URL "
            f"such as gpio:4. Grammar: {GRAMMAR}"
        )
    return {
        "baudrate": baud,
        "part": part,
        "reset": reset,
        "reset_pulse": opt_float(
            url, "reset_pulse", 0.1, minimum=0.001, maximum=5, grammar=GRAMMAR
        ),
        "sync_timeout": opt_float(
            url, "sync_timeout", 3.0, minimum=0.05, maximum=600, grammar=GRAMMAR
        ),
        "retries": opt_int(url, "retries", None, minimum=1, maximum=1000, grammar=GRAMMAR),
    }


def validate(url: str | DeviceURL) -> None:
    """Check an ``stk500:`` URL without opening anything; DeviceURLError if bad."""
    parsed = parse_device_url(url)
    opts = _options(parsed)
    if opts["reset"] not in ("dtr", "none"):
        _check_reset_url(opts["reset"])


def open_url(url: str | DeviceURL, *, name: str | None = None) -> Stk500Programmer:
    """Open the port named by an ``stk500:`` URL (leased) and return the programmer."""
    parsed = parse_device_url(url)
    opts = _options(parsed)
    if opts["reset"] not in ("dtr", "none"):
        _check_reset_url(opts["reset"])
    key = path_key(parsed.target) if parsed.target.startswith("/") else parsed.target
    return open_with_lease(
        key,
        lambda lease: Stk500Programmer(parsed, port=parsed.target, name=name, lease=lease, **opts),
    )
