"""Native STK500v1 programmer: an Arduino-style board behind its Optiboot bootloader.

URL grammar::

    stk500:PORT?baudrate=115200&part=atmega328p&reset=dtr&sync_timeout=3&retries=N

* ``PORT``: a device node (``/dev/ttyACM0``) or anything pyserial's ``serial_for_url`` takes
  (``rfc2217://pi-7:4001``, ``socket://host:port``).
* ``baudrate``: the bootloader's rate (115200 for Optiboot on an Uno, 57600 on old Nanos).
* ``part``: the AVR on the board (``atmega328p``, ``atmega168``, ``atmega2560``...; avrdude's
  ``m328p`` works too); its signature is checked before anything is written.
* ``reset``: ``dtr`` (default: pulse DTR/RTS, the Arduino auto-reset), ``none``, or a device
  URL such as ``gpio:4`` (write ``gpio:4%3Factive_high%3Dfalse`` for a pin wired straight to
  the active-low RESET): the line is turned on for ``reset_pulse`` seconds, then off. The GPIO
  device is opened (and leased) with this one. Where the port has no modem lines (a pty, a
  ``socket://`` bridge), ``dtr`` cannot reset the board: a warning says "this port has no DTR:
  the board was not reset", and the driver, as with ``none``, closes the port for
  ``reset_pulse`` seconds and opens it again instead, which resets a board that resets when
  its port opens (an Uno on USB, the simulator, many bridges) and nothing else.
* ``sync_timeout``: seconds to get the bootloader's attention (default 3); ``retries``: cap on
  the number of sync attempts within that time.

Getting in sync (the timing, and why). After a reset Optiboot 4.4 reads nothing for 65 ms (the
Uno's start-up time: its UART is off, bytes are lost), then flashes the LED for ~375 ms
(6 × 62.5 ms) without reading: bytes that arrive then wait in the UART, which holds three.
Then it answers, and it starts the sketch after 1 s without a byte, or at once after a command
that is not framed as it expects. Bytes queued beyond three overrun, and a leftover half of a
GET_SYNC then reads as a badly framed command: the bootloader is gone. So the driver keeps
exactly one GET_SYNC outstanding:

* it sends the first one 0.1 s after the reset edge (``startup_wait``: past the 65 ms), and
  waits up to 0.6 s for its answer (``first_sync_wait``: the answer comes when the flashes
  end, ~0.44 s after the edge; 0.6 s leaves margin and stays inside the 1 s window);
* if none came (the first was lost: the start-up was longer, or the reset came late), it sends
  one more and waits 0.3 s (``sync_wait``: a listening bootloader answers within a few byte
  times); with no answer to that either, it resets the board again (``syncs_per_reset`` = 2);
* the first INSYNC OK may be stale (a late answer, or the last reply of a holder killed
  mid-operation): it drains the line until it is quiet and syncs once more; only that second
  answer proves the two sides are in step.

Writing. ``program(image)`` syncs, checks the signature, enters programming mode and writes
page by page, each page a critical section and each boundary a safe point; nothing is sent
after a PROG_PAGE before its reply (the chip reads nothing while it writes the page). When the
image holds the reset vector (page 0) and more, page 0 is erased first and written last: a
write that stops half-way (cancelled, deadline, unplugged) leaves a board whose reset vector is
erased, so no half-written program ever starts. If the write fails otherwise (verify) page 0
is erased before leaving programming mode. The error then says "the board holds no valid
program", and ``safe()`` reports ``program: none``. Every page is then read back and compared,
and programming mode is left (Optiboot then starts the program).

``safe()`` leaves programming mode if an operation left the board in it and releases reset; it
closes nothing. A port that vanishes mid-operation gives DeviceIOError; the next operation
reopens it.
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
from .stk500_protocol import (
    PAGE_OVERHEAD,
    STK_INSYNC,
    STK_OK,
    ProtocolError,
    ProtocolTimeout,
    Stk500Link,
)
from .urls import DeviceURL, opt_float, opt_int, opt_str, parse_device_url, reject_unknown

__all__ = ["GRAMMAR", "Stk500Programmer", "open_url", "sync_options", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "stk500:PORT?baudrate=115200&part=atmega328p&reset=dtr|none|gpio:N"
    "&reset_pulse=0.1&sync_timeout=3&retries=N"
)
_OPTIONS = ("baudrate", "part", "reset", "reset_pulse", "sync_timeout", "retries")
_SAFE_LEAVE_TIMEOUT = 0.5  # seconds safe() waits for the reply to LEAVE_PROGMODE
#: bytes moved outside the pages: two syncs 8, signature 7, enter 4, leave 4
_FIXED_BYTES = 23
#: from a reset edge to the bootloader's first answer: Optiboot 4.4's 65 ms start-up and its
#: LED flashes (6 x 62.5 ms), plus the drain that proves the answer is fresh
_BOOT_SECONDS = 0.065 + 0.375 + 0.03
#: a page erase or write on the chip (tWD_FLASH, ATmega328P datasheet)
_PAGE_OPERATION = 0.0045
_INSYNC_OK = bytes((STK_INSYNC, STK_OK))

#: what safe() and errors report about the program on the board
PROGRAM_UNKNOWN = "unknown"  # this driver has not written the board
PROGRAM_NONE = "none"  # a write stopped half-way: the reset vector is erased, nothing runs
PROGRAM_PARTIAL = "partial"  # a write stopped half-way and page 0 could not be erased
PROGRAM_COMPLETE = "complete"  # the last program() wrote (and verified, if asked) the image


class Stk500Programmer(ImageProgrammer):
    """The Programmer capability over STK500v1 (see the module docstring)."""

    scheme = "stk500"
    #: seconds from the reset edge to the first GET_SYNC (Optiboot's 65 ms start-up is deaf)
    startup_wait = 0.1
    #: seconds to wait for the answer to the first GET_SYNC after a reset (LED flashes first)
    first_sync_wait = 0.6
    #: seconds to wait for the answer to a later GET_SYNC (the bootloader should be listening)
    sync_wait = 0.3
    #: GET_SYNCs sent, one at a time, before the board is reset again
    syncs_per_reset = 2

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
        #: what the board holds, as far as this driver knows (PROGRAM_* above)
        self.program_state = PROGRAM_UNKNOWN
        self._io_lock = threading.Lock()
        self._ser: Any = None
        self._in_progmode = False
        self._no_dtr = False
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
        """Line time of every byte moved, the chip's page writes, and the bootloader's start."""
        pages = img.pages(self.part.page_size)
        writes = len(pages) + (1 if _erase_first(pages) else 0)
        per_page = self.part.page_size + PAGE_OVERHEAD
        moved = writes * per_page + (len(pages) * per_page if verify else 0) + _FIXED_BYTES
        # the erase overlaps the page's bytes on the line; the write does not
        receive = self.part.page_size * self.byte_time
        page_time = _PAGE_OPERATION + max(0.0, _PAGE_OPERATION - receive)
        boot = self._reset_seconds() + _BOOT_SECONDS
        return moved * self.byte_time + writes * page_time + boot + 0.05

    def _reset_seconds(self) -> float:
        """Seconds a reset takes before the reset edge (the pulse, or the closed port)."""
        return self.reset_pulse

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
        self._run(op, pages, verify)

    def _before_program(self, pages: list[tuple[int, bytes]]) -> None:
        """Hook for subclasses (the simulator learns the page count here)."""

    def _run(self, op: Operation, pages: list[tuple[int, bytes]], verify: bool) -> None:
        stage, address = "opening the port", None
        link: Stk500Link | None = None
        started = False  # a page write was sent: the flash no longer holds what it held
        try:
            try:
                self._open_port()
                stage = "syncing with the bootloader"
                link = self._sync(op)
                stage = "checking the signature"
                self._check_signature(link)
                stage = "entering programming mode"
                link.enter_progmode()
                self._in_progmode = True
                stage = "writing"
                total = len(pages)
                for done, address, data in _write_order(pages, self.part.page_size):
                    op.check()
                    if not started:
                        started, self.program_state = True, PROGRAM_PARTIAL
                    with op.critical():
                        link.write_page(address, data)
                    if address == 0:
                        self.program_state = PROGRAM_NONE if done == 0 else PROGRAM_PARTIAL
                    if done:
                        op.report("write", done, total)
                if verify:
                    stage = "verifying"
                    for done, (address, data) in enumerate(pages, start=1):
                        op.check()
                        got = link.read_page(address, len(data))
                        if got != data:
                            raise _verify_error(self.label, address, data, got)
                        op.report("verify", done, total)
                self.program_state = PROGRAM_COMPLETE
                stage, address = "leaving programming mode", None
                self._leave(link)
            except ProtocolTimeout as exc:
                link = None  # the board stopped answering: do not talk over it
                raise DeviceTimeoutError(
                    f"{self.label}: {exc} on {self.port} (no reply within "
                    f"{self.reply_timeout:g} s); check the cable and that the board still has "
                    "power"
                ) from exc
            except ProtocolError as exc:
                link = None
                raise ProgrammingError(f"{self.label}: {exc}", address=address) from exc
            except (serial.SerialException, OSError) as exc:
                if isinstance(exc, DriverError):
                    raise
                link = None
                self._close_port()  # _in_progmode stays as it was: safe() finds out
                where = f" at 0x{address:X}" if address is not None else ""
                raise DeviceIOError(
                    f"{self.label}: the port {self.port} failed while {stage}{where}: {exc}. "
                    "The board may have been unplugged or reset; check the USB cable and "
                    "power. The next operation reopens the port"
                ) from exc
        except DriverError as exc:
            if started and self.program_state != PROGRAM_COMPLETE:
                _add_note(exc, self._no_valid_program(link))
            raise
        finally:
            if self._in_progmode and self._ser is not None and stage != "leaving programming mode":
                self._leave_quietly()

    def _no_valid_program(self, link: Stk500Link | None) -> str:
        """After a write that did not complete: erase page 0 if still needed; say what is left."""
        if self.program_state != PROGRAM_NONE and link is not None:
            try:
                link.write_page(0, b"\xff" * self.part.page_size)
                self.program_state = PROGRAM_NONE
            except (ProtocolError, serial.SerialException, OSError) as exc:
                log.warning("%s: could not erase the first page: %s", self.label, exc)
        if self.program_state == PROGRAM_NONE:
            return (
                "the board holds no valid program (its first page is erased, so nothing runs); "
                "program it again"
            )
        self.program_state = PROGRAM_PARTIAL
        return (
            "the board may hold a half-written program (its first page could not be erased); "
            "program it again before letting it run"
        )

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
            reopened = self._ser is None
            ser = self._open_port()
            timeout = min(self.reply_timeout, _SAFE_LEAVE_TIMEOUT)
            if reopened:  # opening the port reset an Uno: its bootloader listens after a while
                time.sleep(self.startup_wait)
                timeout = self.first_sync_wait
            ser.reset_input_buffer()  # a late reply to a timed-out command
            ser.timeout = timeout
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

    # -- reset and sync ---------------------------------------------------------------------
    def _reset(self, op: Operation) -> None:
        """Reset the board; its reset edge is when this returns."""
        if self._reset_device is not None:
            self._reset_device.on()
            op.wait_cancelled(self.reset_pulse)
            self._reset_device.off()
            return
        if self.reset_mode == "dtr" and self._pulse_dtr(op):
            return
        # no reset line: reopen the port, which resets a board that resets when it is opened
        self._close_port()
        op.wait_cancelled(self.reset_pulse)
        self._open_port()

    def _pulse_dtr(self, op: Operation) -> bool:
        """The Arduino auto-reset: DTR/RTS off, then on (the edge). False: no modem lines."""
        ser = self._open_port()
        try:
            ser.dtr = False
            ser.rts = False
        except (OSError, serial.SerialException) as exc:
            if not self._no_dtr:
                log.warning(
                    "%s: this port has no DTR: the board was not reset (%s); reopening %s "
                    "instead, which resets a board that resets when its port opens",
                    self.label,
                    exc,
                    self.port,
                )
            self._no_dtr = True
            return False
        op.wait_cancelled(self.reset_pulse)
        ser.dtr = True
        ser.rts = True
        return True

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

    def _sync_once(self, wait: float) -> bytes:
        """Send one GET_SYNC and wait up to ``wait`` seconds for its two-byte answer."""
        ser = self._ser
        ser.timeout = max(0.01, wait)
        try:
            return Stk500Link(ser).sync_once()
        finally:
            ser.timeout = self.reply_timeout

    def _sync(self, op: Operation) -> Stk500Link:
        """Get the bootloader's attention, one GET_SYNC at a time (see the module docstring)."""
        deadline = time.monotonic() + self.sync_timeout
        attempts = garbled = 0

        def out_of_attempts() -> bool:
            late = time.monotonic() >= deadline
            return late or (self.retries is not None and attempts >= self.retries)

        while not out_of_attempts():
            op.check()
            self._reset(op)
            edge = time.monotonic()
            op.wait_cancelled(max(0.0, min(edge + self.startup_wait, deadline) - edge))
            for n in range(self.syncs_per_reset):
                op.check()
                if out_of_attempts():
                    break
                wait = self.first_sync_wait if n == 0 else self.sync_wait
                attempts += 1
                reply = self._sync_once(min(wait, deadline - time.monotonic()))
                if reply == _INSYNC_OK:
                    self._drain()  # a stale answer is followed by the fresh one: drop both
                    if self._sync_once(self.sync_wait) == _INSYNC_OK:
                        log.debug("%s: in sync after %d attempt(s)", self.label, attempts)
                        return Stk500Link(self._ser)
                    log.debug("%s: the first INSYNC was stale; resetting again", self.label)
                    break
                if reply:
                    garbled += 1
        raise DeviceTimeoutError(self._no_answer(attempts, garbled))

    def _no_answer(self, attempts: int, garbled: int) -> str:
        text = (
            f"{self.label}: no answer from the bootloader on {self.port} at {self.baudrate} "
            f"baud ({attempts} sync attempts in {self.sync_timeout:g} s). "
        )
        if self._no_dtr:
            text += (
                "This port has no DTR: the board was not reset (reopening the port did not "
                "reset it either); wire reset= to a GPIO pin on the board's RESET, or press "
                "its reset button as programming starts. "
            )
        if garbled:
            text += (
                f"{garbled} answer(s) were not STK500 at all: the baud rate probably does not "
                "match the bootloader's. "
            )
        return text + (
            "Check that the port is this board's, that the baud rate matches its bootloader "
            "(115200 for Optiboot on an Uno, 57600 on older Nanos), that the board has a "
            "bootloader, and that reset works (DTR auto-reset or the reset= wiring): a running "
            "sketch ignores the programmer"
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

    # -- check (``labruntime device check``) -----------------------------------------------
    def check(self) -> dict[str, Any]:
        """Contact the board as deeply as a programmer can without writing: reset it, sync
        with its bootloader (the same "no answer" diagnosis as ``program()``, after
        ``sync_timeout`` seconds), read the signature, let the bootloader go. Returns what was
        found; raises DeviceTimeoutError, ProgrammingError (a wrong signature) or
        DeviceIOError."""
        self._check_open()
        with self._exclusive(), self.ops.operation("check") as op:
            try:
                self._open_port()
                link = self._sync(op)
                self._check_signature(link)
                signature = self.part.signature.hex()
                self._leave(link)  # Optiboot starts the board's program again
            except ProtocolTimeout as exc:
                raise DeviceTimeoutError(
                    f"{self.label}: {exc} on {self.port}; check the cable and the board's power"
                ) from exc
            except ProtocolError as exc:
                raise ProgrammingError(f"{self.label}: {exc}") from exc
            except (serial.SerialException, OSError) as exc:
                if isinstance(exc, DriverError):
                    raise
                self._close_port()
                raise DeviceIOError(f"{self.label}: the port {self.port} failed: {exc}") from exc
        return {"bootloader": "in sync", "signature": signature, "part": self.part.name}

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
            "program": self.program_state,
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
            "program": self.program_state,
            "last_result": None if self.last_result is None else self.last_result.to_dict(),
        }


def _erase_first(pages: list[tuple[int, bytes]]) -> bool:
    """Whether page 0 is erased first and written last (the image holds it, and more)."""
    return len(pages) > 1 and pages[0][0] == 0


def _write_order(pages: list[tuple[int, bytes]], page_size: int) -> list[tuple[int, int, bytes]]:
    """``(done, address, data)`` in the order written; ``done`` 0 for the erase of page 0."""
    numbered = [(done, address, data) for done, (address, data) in enumerate(pages, start=1)]
    if not _erase_first(pages):
        return numbered
    first, rest = numbered[0], numbered[1:]
    shifted = [(done - 1, address, data) for done, address, data in rest]
    return [(0, 0, b"\xff" * page_size), *shifted, (len(pages), first[1], first[2])]


def _add_note(exc: DriverError, note: str) -> None:
    """Append ``note`` to the message of ``exc`` (its class and attributes stay)."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}; {note}", *exc.args[1:])
    else:
        exc.args = (note, *exc.args)


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
        **sync_options(url, GRAMMAR),
    }


def sync_options(url: DeviceURL, grammar: str) -> dict[str, Any]:
    """A URL's ``sync_timeout`` and ``retries``, for :class:`Stk500Programmer`: the options of
    ``stk500:`` and of the simulators programmed through it (``sim:arduino``, ``sim:avr``)."""
    return {
        "sync_timeout": opt_float(
            url, "sync_timeout", 3.0, minimum=0.05, maximum=600, grammar=grammar
        ),
        "retries": opt_int(url, "retries", None, minimum=1, maximum=1000, grammar=grammar),
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
