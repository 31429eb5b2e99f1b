"""A simulated Arduino Uno: Optiboot 4.4 on an ATmega behind a pseudo-terminal, in real time.

``SimulatedArduino`` opens a pty pair and serves the slave side's path, which a driver (or
avrdude) opens through pyserial exactly like a USB serial port::

    with SimulatedArduino(baudrate=115200, faults="verify@0x100") as board:
        path = board.start()          # e.g. /tmp/labruntime-sim-ab12/ttyARDUINO
        ...                           # avrdude -c arduino -p m328p -P path -b 115200 ...
        board.flash                   # what the board holds now
        board.program_runs            # the application runs and the flash holds a program

It behaves like the real board where a programmer can get it wrong (a test on a more forgiving
simulator would prove nothing):

* **Resets.** Power-on starts the application (Optiboot only runs after an *external* reset).
  Opening the port resets the board, as an Uno's DTR auto-reset does (the first open, seen
  through inotify: see :mod:`.pty`); so does :meth:`reset` (the same circuit, for a programmer
  that pulses DTR: the ``sim:arduino`` device does). The pty itself has no modem lines:
  setting DTR on it fails, as on a ``socket://`` bridge.
* **Deaf after a reset.** For ``startup`` seconds (65 ms: the Uno's fuses) the UART is off and
  bytes are lost; then the bootloader flashes the LED ``flashes`` times (3 × 2 × 62.5 ms =
  375 ms) without reading the UART: what arrives meanwhile waits in the receiver, which holds
  three bytes; more overrun it.
* **The bootloader** is :func:`.bootloader.optiboot`, byte by byte: 1 s without a byte (its
  watchdog) or one badly framed command (no NOSYNC reply) and it starts the application; after
  LEAVE_PROGMODE it starts the application too, and answers nothing until the next reset.
  Page erases and writes take the chip's 4.5 ms each, during which the CPU reads nothing.
* **The line** runs at the configured baud rate, 10 bits per byte, full duplex. A host that
  opened the port at another rate (its termios speed, read from the pty) sends garbage with
  framing errors, and reads garbage.

There is one model of the board, this faithful one: tests, the demo and ``labruntime sim
arduino`` all use it (avrdude, the reference for what a real bootloader tolerates, programs
it as it programs an Uno).

The tty path is a symlink in a private temporary directory pointing at the current
``/dev/pts/N``. After a ``disconnect`` fault the old pty is gone (the host's reads fail with
an I/O error), the board has been power-cycled, and a new pty is in place at the *same path*.
Faults: see :mod:`.faults`.

URL grammar (``open_url``; the device is the native STK500 driver on a fresh simulator, which
it owns and stops on ``close()``)::

    sim:arduino?baud=115200&part=atmega328p&fault=FAULTS&reset=dtr|none&startup=0.065
               &flashes=3&sync_timeout=3&retries=N

``reset=dtr`` (default): the board's DTR auto-reset is wired, the driver pulses it.
``reset=none``: only opening the port resets the board (a bridge without modem lines).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import shutil
import threading
import time
from collections import deque
from typing import Any

from ..base import open_with_lease
from ..errors import DeviceURLError
from ..lease import path_key
from ..operations import Operation
from ..parts import Part, get_part
from ..stk500 import Stk500Programmer, sync_options
from ..urls import (
    DeviceURL,
    opt_choice,
    opt_float,
    opt_int,
    opt_str,
    parse_device_url,
    reject_unknown,
)
from .bootloader import (
    GETCH,
    HANG,
    PAGE_OPERATION,
    SPM_WAIT,
    WATCHDOG_RESET,
    Busy,
    Memory,
    Program,
    Putch,
    Request,
    SpmStart,
    Watchdog,
    optiboot,
)
from .faults import FAULT_GRAMMAR, Faults, parse_faults
from .pty import SerialPty
from .run_dirs import make_run_dir
from .uart import UartRx, UartTx

__all__ = [
    "GRAMMAR",
    "SimulatedArduino",
    "SimulatedArduinoProgrammer",
    "open_url",
    "validate",
]

log = logging.getLogger(__name__)

GRAMMAR = (
    "sim:arduino?baud=115200&part=atmega328p&fault=FAULTS&reset=dtr|none&startup=0.065"
    f"&flashes=3&sync_timeout=3&retries=N (FAULTS: {FAULT_GRAMMAR})"
)
_OPTIONS = (
    "baud",
    "baudrate",
    "part",
    "fault",
    "reset",
    "startup",
    "flashes",
    "sync_timeout",
    "retries",
)
#: an Uno's start-up time after a reset (SUT/CKSEL fuses: 16K CK + 65 ms)
STARTUP = 0.065
#: Optiboot's LED_START_FLASHES on an Uno
FLASHES = 3
#: rates within this fraction of each other still frame correctly
_RATE_TOLERANCE = 0.03
_INF = math.inf


class SimulatedArduino:
    """A simulated Uno (Optiboot 4.4) on a pty; see the module docstring."""

    def __init__(
        self,
        baudrate: int = 115200,
        part: str | Part = "atmega328p",
        faults: str | Faults | None = None,
        *,
        startup: float = STARTUP,
        flashes: int = FLASHES,
    ) -> None:
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, got {baudrate!r}")
        if startup < 0 or flashes < 0:
            raise ValueError("startup and flashes must not be negative")
        self.baudrate = baudrate
        self.part = part if isinstance(part, Part) else get_part(part)
        self.faults = parse_faults(faults)
        self.startup = startup
        self.flashes = flashes
        self.byte_time = 10.0 / baudrate * self.faults.slow
        self.memory = Memory(self.part, corrupt_at=self.faults.verify_at)
        self.expected_pages: int | None = None
        #: counters for tests and benchmarks: every byte the host sent (also under nosync) and
        #: the board sent; external resets; application starts; bytes lost to overruns
        self.bytes_received = 0
        self.bytes_sent = 0
        self.resets = 0
        self.app_starts = 0
        self.disconnects = 0
        self._disconnect_pending = self.faults.disconnect_at is not None
        self._session_pages = 0
        self._rx = UartRx(self.byte_time)
        self._tx = UartTx(self.byte_time)
        self._outbox: deque[tuple[float, bytes]] = deque()
        self._program: Program | None = None
        self._request: Request | None = None
        self._state = "app"
        self._t = 0.0  # the CPU's clock (monotonic seconds): when it does its next step
        self._away = False  # the CPU did something else than wait for a byte since its last
        self._uart_on = 0.0
        self._wd_timeout = _INF
        self._wd_deadline = _INF
        self._spm_until = 0.0
        self._rate_ok = True
        self._reset_requested: float | None = None
        self._dir: str | None = None
        self._pty: SerialPty | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def tty_path(self) -> str:
        if self._pty is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._pty.path

    @property
    def pts_path(self) -> str | None:
        """The ``/dev/pts/N`` the tty path points at now."""
        return self._pty.pts_path if self._pty is not None else None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Create the pty, start serving, return the tty path to open."""
        if self._thread is not None:
            return self.tty_path
        self._stop.clear()
        self._dir = make_run_dir("labruntime-sim-")  # stale ones (kill -9) removed
        self._pty = SerialPty(self._dir)
        try:
            self._pty.create()
        except OSError:
            self._pty = None
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        with self._lock:
            self._start_app(time.monotonic(), "power-on")
        self._thread = threading.Thread(target=self._serve, name="sim-arduino", daemon=True)
        self._thread.start()
        log.info(
            "simulated %s at %d baud on %s (%s); faults: %s",
            self.part.name,
            self.baudrate,
            self._pty.path,
            self._pty.pts_path,
            ", ".join(self.faults.to_list()) or "none",
        )
        return self._pty.path

    def stop(self) -> None:
        """Stop serving and remove the pty and the tty path. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake()
            thread.join(5.0)
            if thread.is_alive():
                log.error("the simulated board's thread did not stop within 5 s")
        if self._pty is not None:
            self._pty.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._pty = None

    def __enter__(self) -> SimulatedArduino:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test looks at ---------------------------------------------------------------
    @property
    def flash(self) -> bytes:
        """A copy of the whole flash (0xFF where erased)."""
        return bytes(self.memory.flash)

    def erase(self) -> None:
        """Erase the whole application flash (as ``avrdude -e`` with an ISP programmer would)."""
        with self._lock:
            self.memory.flash[:] = b"\xff" * len(self.memory.flash)

    @property
    def state(self) -> str:
        """``bootloader`` (after an external reset) or ``app`` (the application section runs)."""
        return self._state

    @property
    def program_runs(self) -> bool:
        """The application runs and there is one: the reset vector is programmed."""
        return self._state == "app" and self.memory.has_program

    def wait_state(self, state: str, timeout: float) -> bool:
        """Block until the board is in ``state`` (``app``, ``bootloader``); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state == state, timeout)

    @property
    def pages_written(self) -> int:
        return self.memory.pages_written

    @property
    def bytes_lost(self) -> int:
        """Received bytes lost: sent during a start-up, or overrun while the CPU was busy."""
        return self._rx.lost

    def reset(self) -> None:
        """An external reset now: the DTR auto-reset (or the reset button) of an Uno."""
        with self._lock:
            self._reset_requested = time.monotonic()
        self._wake()

    def announce_pages(self, pages: int | None) -> None:
        """Tell the simulator how many pages the next programming run writes (disconnect@%)."""
        self.expected_pages = pages

    def describe(self) -> dict[str, object]:
        return {
            "tty": self._pty.path if self._pty is not None else None,
            "pts": self.pts_path,
            "baudrate": self.baudrate,
            "part": self.part.name,
            "bootloader": "optiboot 4.4",
            "startup": self.startup,
            "flashes": self.flashes,
            "faults": self.faults.to_list(),
            "state": self._state,
            "resets": self.resets,
            "disconnects": self.disconnects,
        }

    # -- serving ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        try:
            self._serve_loop()
        except Exception:
            log.exception("the simulated board crashed")

    def _serve_loop(self) -> None:
        pty = self._pty
        assert pty is not None
        while not self._stop.is_set():
            with self._lock:
                for opened in pty.port_changes():
                    self._port_changed(opened)
                requested, self._reset_requested = self._reset_requested, None
                if requested is not None:
                    self._external_reset(requested, "reset line")
                wake_at = self._advance(time.monotonic())
            wake_at = min(wake_at, self._flush(time.monotonic()))
            fds = [self._wake_r, pty.events, *([pty.master] if pty.host_open else [])]
            timeout = max(0.0, min(wake_at - time.monotonic(), 3600.0))
            readable, _, _ = select.select(fds, [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if pty.master in readable:
                self._read_host(pty)

    def _port_changed(self, opened: bool) -> None:
        """The host opened the port (an Uno's DTR resets it then) or closed it."""
        if not opened:
            self._outbox.clear()
            log.debug("simulated board: the host closed the port")
            return
        self._rate_ok = self._rate_matches()
        self._external_reset(time.monotonic(), "port opened")

    def _rate_matches(self) -> bool:
        rate = self._pty.host_rate() if self._pty is not None else None
        return rate is None or abs(rate - self.baudrate) <= _RATE_TOLERANCE * self.baudrate

    def _read_host(self, pty: SerialPty) -> None:
        chunk = pty.read()
        if not chunk:
            return  # nothing yet, or the host is gone (its close event follows)
        self.bytes_received += len(chunk)
        if self.faults.nosync or self._state != "bootloader":
            return  # nobody reads the UART (the application ignores it)
        self._rate_ok = self._rate_matches()
        if self._rate_ok:
            self._rx.receive(chunk, time.monotonic())
        else:
            self._rx.receive(_garble(chunk), time.monotonic(), framing_error=True)

    def _flush(self, now: float) -> float:
        """Hand the host every reply byte whose time has come; when the next one is due."""
        pty = self._pty
        while self._outbox and self._outbox[0][0] <= now:
            _, data = self._outbox.popleft()
            if pty is not None and pty.host_open and not pty.write(data):
                log.debug("simulated board: host not reading; dropped %d bytes", len(data))
        return self._outbox[0][0] if self._outbox else _INF

    # -- the chip ---------------------------------------------------------------------------
    def _external_reset(self, at: float, why: str) -> None:
        self.resets += 1
        self._rx.clear()
        self._tx.clear()
        self._outbox.clear()
        self._uart_on = at + self.startup
        self._t = self._uart_on
        self._away = False
        self._wd_timeout = self._wd_deadline = _INF
        self._spm_until = 0.0
        self._session_pages = 0
        self._state = "bootloader"
        self._changed.notify_all()
        self._program = optiboot(self.memory, flashes=self.flashes, noleave=self.faults.noleave)
        self._request = next(self._program)
        log.debug("simulated board: reset (%s)", why)

    def _start_app(self, at: float, why: str) -> None:
        """The chip runs its application section (callers hold ``_lock``, or own the board)."""
        self._state = "app"
        self._changed.notify_all()
        self._program = None
        self._request = None
        self._rx.clear()
        self.app_starts += 1
        log.debug(
            "simulated board: the application starts (%s)%s",
            why,
            "" if self.memory.has_program else "; the flash holds no program",
        )

    def _advance(self, now: float) -> float:
        """Run the bootloader as far as ``now`` allows; when it next needs the clock."""
        while self._program is not None:
            req = self._request
            if req is GETCH:
                self._rx.drop_before(self._uart_on)  # sent while the UART was off
                if self._away:
                    if now < self._t:
                        return self._t  # bytes may still arrive while the CPU is busy
                    self._rx.overrun(self._t)
                    self._away = False
                byte = self._rx.peek()
                if byte is not None and byte.arrival <= self._wd_deadline:
                    self._rx.take()
                    self._t = max(self._t, byte.arrival)
                    if not byte.framing_error:
                        self._wd_deadline = self._t + self._wd_timeout
                    self._request = self._program.send(byte.value)
                    continue
                if byte is None and now < self._wd_deadline:
                    return self._wd_deadline
                self._start_app(self._wd_deadline, "watchdog")
                break
            if req is HANG:
                if now < self._wd_deadline:
                    return self._wd_deadline
                self._start_app(self._wd_deadline, "watchdog after a bad command")
                break
            if isinstance(req, Putch):
                data = req.data if self._rate_ok else _garble(req.data)
                go_on, done = self._tx.send(self._t, len(data))
                self._outbox.append((done, data))
                self.bytes_sent += len(data)
                if go_on > self._t:
                    self._t, self._away = go_on, True
            elif isinstance(req, Busy):
                self._t += req.seconds
                self._away = True
            elif isinstance(req, Watchdog):
                self._wd_timeout = req.seconds
                self._wd_deadline = self._t + req.seconds
            elif req is WATCHDOG_RESET:
                self._wd_deadline = self._t + self._wd_timeout
            elif isinstance(req, SpmStart):
                if req.erase and self._should_disconnect():
                    self._disconnect()
                    return now
                if not req.erase:
                    self._session_pages += 1
                self._spm_until = self._t + PAGE_OPERATION
            elif req is SPM_WAIT and self._spm_until > self._t:
                self._t, self._away = self._spm_until, True
            self._request = self._program.send(0)
        return _INF

    def _should_disconnect(self) -> bool:
        if not self._disconnect_pending:
            return False
        total = self.expected_pages or self.part.pages
        threshold = int(total * (self.faults.disconnect_at or 0.0) / 100.0)
        return self._session_pages >= threshold

    def _disconnect(self) -> None:
        self._disconnect_pending = False
        self.disconnects += 1
        log.info(
            "simulated board: disconnect fault after %d pages; %s is gone",
            self._session_pages,
            self.pts_path,
        )
        # the new pty is in place (symlink switched atomically) before the old one closes, so
        # the path never dangles for a host that reopens at once
        self._outbox.clear()
        self._start_app(time.monotonic(), "power-on after the disconnect")
        if self._pty is not None:
            self._pty.replace()
        log.info("simulated board is back on %s (now %s)", self.tty_path, self.pts_path)


def _garble(data: bytes) -> bytes:
    """What a UART makes of bytes sent at another baud rate (wrong bits; fixed here)."""
    return bytes(((b * 37) + 0x5B) & 0xFF for b in data)


# -- sim:arduino URLs ---------------------------------------------------------------------------
def _options(url: DeviceURL) -> dict[str, Any]:
    if url.target.lower() != "arduino":
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: this simulator is 'sim:arduino', not "
            f"'sim:{url.target}'. Grammar: {GRAMMAR}"
        )
    reject_unknown(url, _OPTIONS, GRAMMAR)
    if "baud" in url.options and "baudrate" in url.options:
        raise DeviceURLError(f"bad device URL {str(url)!r}: give baud or baudrate, not both")
    baud = opt_int(url, "baud", None, minimum=300, maximum=4_000_000, grammar=GRAMMAR)
    if baud is None:
        baud = opt_int(url, "baudrate", 115200, minimum=300, maximum=4_000_000, grammar=GRAMMAR)
    part_name = opt_str(url, "part", "atmega328p", grammar=GRAMMAR)
    try:
        part = get_part(part_name)
    except KeyError as exc:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: {exc.args[0]}. Grammar: {GRAMMAR}"
        ) from None
    return {
        "baudrate": baud,
        "part": part,
        "faults": parse_faults(opt_str(url, "fault", None, grammar=GRAMMAR)),
        "reset": opt_choice(url, "reset", ["dtr", "none"], "dtr", grammar=GRAMMAR),
        "startup": opt_float(url, "startup", STARTUP, minimum=0, maximum=10, grammar=GRAMMAR),
        "flashes": opt_int(url, "flashes", FLASHES, minimum=0, maximum=20, grammar=GRAMMAR),
        **sync_options(url, GRAMMAR),
    }


def validate(url: str | DeviceURL) -> None:
    """Check a ``sim:arduino`` URL without starting anything; DeviceURLError if bad."""
    _options(parse_device_url(url))


class SimulatedArduinoProgrammer(Stk500Programmer):
    """The native STK500 driver on a simulated board it owns (stopped on close()).

    With ``reset=dtr`` the board's auto-reset circuit is wired to the driver's DTR pulse (a pty
    has no DTR line of its own); with ``reset=none`` only reopening the port resets it.
    """

    scheme = "sim"

    def __init__(
        self, url: str | DeviceURL, *, board: SimulatedArduino, reset: str = "dtr", **kwargs: Any
    ) -> None:
        self.board = board
        super().__init__(url, port=board.tty_path, part=board.part, reset=reset, **kwargs)

    def _pulse_dtr(self, op: Operation) -> bool:
        self.board.reset()  # the falling DTR edge through the Uno's 100 nF capacitor
        return True

    def _reset_seconds(self) -> float:
        return 0.0 if self.reset_mode == "dtr" else super()._reset_seconds()

    def _before_program(self, pages: list[tuple[int, bytes]]) -> None:
        self.board.announce_pages(len(pages))

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.board.stop()

    def _describe(self) -> dict[str, Any]:
        info = super()._describe()
        info["simulator"] = self.board.describe()
        return info


def open_url(url: str | DeviceURL, *, name: str | None = None) -> SimulatedArduinoProgrammer:
    """Start a simulated board and return the native STK500 driver connected to it."""
    parsed = parse_device_url(url)
    opts = _options(parsed)
    board = SimulatedArduino(
        opts["baudrate"],
        opts["part"],
        opts["faults"],
        startup=opts["startup"],
        flashes=opts["flashes"],
    )
    board.start()
    # leased under the pty's real path, the key an stk500: URL on the same tty gets; the board
    # is new, so an earlier holder of a reused /dev/pts/N is not its concern
    return open_with_lease(
        path_key(board.tty_path),
        lambda lease: SimulatedArduinoProgrammer(
            parsed,
            board=board,
            reset=opts["reset"],
            baudrate=opts["baudrate"],
            sync_timeout=opts["sync_timeout"],
            retries=opts["retries"],
            name=name,
            lease=lease,
        ),
        fresh=True,
        on_failure=board.stop,
    )
