"""A simulated Arduino: an STK500v1 (Optiboot) bootloader behind a pseudo-terminal.

``SimulatedArduino`` opens a pty pair, serves the bootloader (:mod:`.bootloader`) on the
master side in a background thread, and gives out a tty path for the slave side, which a
driver (or avrdude) opens through pyserial exactly like a USB serial port::

    with SimulatedArduino(baudrate=115200, faults="verify@0x100") as board:
        path = board.start()          # e.g. /tmp/labruntime-sim-ab12/ttyARDUINO
        ...                           # avrdude -c arduino -p m328p -P path -b 115200 ...
        board.flash                   # what the board holds now

Timing: bytes are paced like a real UART at the configured baud rate, 10 bits per byte, in
both directions independently (full duplex): a command is acted on only when its last byte
would have arrived, and a reply is handed to the host when its last byte would have been sent.
Writing a flash page takes no extra time (a real ATmega needs ~4-9 ms more per page).

Reset: a pty has no DTR/RTS line (setting them fails with ENOTTY, which the driver and avrdude
tolerate), so the simulated bootloader listens all the time, as if every sync attempt came
right after a reset; LEAVE_PROGMODE does not start an application.

The tty path is a symlink in a private temporary directory pointing at the current
``/dev/pts/N``. The simulator keeps its own handle on the slave, so a host may close and reopen
the port at will. After a ``disconnect`` fault the old pty is gone (the host's reads fail with
an I/O error) and a new pty is created at once; the symlink is switched to it, so the *same
path* works again for the next open. Faults: see :mod:`.faults`.

URL grammar (``open_url``; the device is the native STK500 driver on a fresh simulator, which
it owns and stops on ``close()``)::

    sim:arduino?baud=115200&part=atmega328p&fault=FAULTS&sync_timeout=3&retries=N
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import tempfile
import threading
import time
import tty
from typing import Any

from ..base import open_with_lease
from ..errors import DeviceURLError
from ..lease import path_key
from ..parts import Part, get_part
from ..stk500 import Stk500Programmer
from ..stk500_protocol import STK_LEAVE_PROGMODE, STK_PROG_PAGE
from ..urls import DeviceURL, opt_float, opt_int, opt_str, parse_device_url, reject_unknown
from .bootloader import Bootloader, command_length
from .faults import FAULT_GRAMMAR, Faults, parse_faults
from .uart import UartLine

__all__ = [
    "GRAMMAR",
    "SimulatedArduino",
    "SimulatedArduinoProgrammer",
    "open_url",
    "validate",
]

log = logging.getLogger(__name__)

GRAMMAR = (
    "sim:arduino?baud=115200&part=atmega328p&fault=FAULTS&sync_timeout=3&retries=N "
    f"(FAULTS: {FAULT_GRAMMAR})"
)
_OPTIONS = ("baud", "baudrate", "part", "fault", "sync_timeout", "retries")


class SimulatedArduino:
    """A simulated Optiboot board on a pty; see the module docstring."""

    def __init__(
        self,
        baudrate: int = 115200,
        part: str | Part = "atmega328p",
        faults: str | Faults | None = None,
    ) -> None:
        if not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, got {baudrate!r}")
        self.baudrate = baudrate
        self.part = part if isinstance(part, Part) else get_part(part)
        self.faults = parse_faults(faults)
        self.byte_time = 10.0 / baudrate * self.faults.slow
        self.bootloader = Bootloader(self.part, corrupt_at=self.faults.verify_at)
        self._line = UartLine(self.byte_time)
        self.expected_pages: int | None = None
        self.disconnects = 0
        #: every byte the host sent (also under nosync) and the board answered; for tests and
        #: benchmarks
        self.bytes_received = 0
        self.bytes_sent = 0
        self._disconnect_pending = self.faults.disconnect_at is not None
        self._dir: str | None = None
        self._link: str | None = None
        self._master = -1  # pty fds, -1 when closed
        self._slave = -1
        self.pts_path: str | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def tty_path(self) -> str:
        if self._link is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._link

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Create the pty, start serving, return the tty path to open."""
        if self._thread is not None:
            return self.tty_path
        self._stop.clear()
        self._line.clear()
        self._dir = tempfile.mkdtemp(prefix="labruntime-sim-")
        self._link = os.path.join(self._dir, "ttyARDUINO")
        self._open_pty()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="sim-arduino", daemon=True)
        self._thread.start()
        log.info(
            "simulated %s at %d baud on %s (%s); faults: %s",
            self.part.name,
            self.baudrate,
            self._link,
            self.pts_path,
            ", ".join(self.faults.to_list()) or "none",
        )
        return self._link

    def stop(self) -> None:
        """Stop serving and remove the pty and the tty path. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            thread.join(5.0)
            if thread.is_alive():
                log.error("the simulated board's thread did not stop within 5 s")
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._link = None

    def __enter__(self) -> SimulatedArduino:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def flash(self) -> bytes:
        """A copy of the whole flash (0xFF where never written)."""
        with self._lock:
            return bytes(self.bootloader.flash)

    def announce_pages(self, pages: int | None) -> None:
        """Tell the simulator how many pages the next programming run writes (disconnect@%)."""
        self.expected_pages = pages

    def describe(self) -> dict[str, object]:
        return {
            "tty": self._link,
            "pts": self.pts_path,
            "baudrate": self.baudrate,
            "part": self.part.name,
            "faults": self.faults.to_list(),
            "disconnects": self.disconnects,
        }

    # -- pty --------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pts_path = os.ttyname(slave)
        link = self.tty_path
        tmp = link + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(self.pts_path, tmp)
        os.replace(tmp, link)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    # -- serving ----------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._serve_loop()
        except Exception:
            log.exception("the simulated board crashed")

    def _serve_loop(self) -> None:
        line = self._line
        while not self._stop.is_set():
            buf = line.buffer
            length = command_length(buf)
            if length is not None and len(buf) >= length:
                frame = bytes(buf[:length])
                ready = line.arrival(length - 1)
                if not self._sleep_until(ready):
                    return
                if frame[0] == STK_PROG_PAGE and self._should_disconnect():
                    self._disconnect()
                    line.clear()
                    continue
                if frame[0] == STK_LEAVE_PROGMODE and self.faults.noleave:
                    line.consume(length)  # lost on the way: no reply, still in progmode
                    continue
                with self._lock:
                    used, reply = self.bootloader.execute(frame)
                line.consume(used)
                if reply:
                    done = line.transmit(ready, len(reply))
                    if not self._sleep_until(done) or not self._send(reply):
                        return
                    self.bytes_sent += len(reply)
                continue
            readable, _, _ = select.select([self._master, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            try:
                chunk = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            self.bytes_received += len(chunk)
            if not self.faults.nosync:
                line.receive(chunk, time.monotonic())

    def _should_disconnect(self) -> bool:
        if not self._disconnect_pending:
            return False
        total = self.expected_pages or self.part.pages
        threshold = int(total * (self.faults.disconnect_at or 0.0) / 100.0)
        return self.bootloader.pages_written >= threshold

    def _disconnect(self) -> None:
        self._disconnect_pending = False
        self.disconnects += 1
        log.info(
            "simulated board: disconnect fault after %d pages; %s is gone",
            self.bootloader.pages_written,
            self.pts_path,
        )
        # the new pty is in place (symlink switched atomically) before the old one closes, so
        # the path never dangles for a host that reopens at once
        old = (self._master, self._slave)
        self._open_pty()
        for fd in old:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with self._lock:
            self.bootloader.reset()
        log.info("simulated board is back on %s (now %s)", self._link, self.pts_path)

    def _sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic); False if stop() was called meanwhile."""
        delay = deadline - time.monotonic()
        if delay > 0.002:
            return not self._stop.wait(delay)
        if delay > 0:
            time.sleep(delay)
        return not self._stop.is_set()

    def _send(self, data: bytes) -> bool:
        """Write ``data`` to the master; drop it if the host does not read for 2 s."""
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view:
            try:
                n = os.write(self._master, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                log.debug("simulated board: host not reading; dropped %d bytes", len(view))
                return True
            _, writable, _ = select.select([self._wake_r], [self._master], [], left)
            if self._stop.is_set():
                return False
        return True


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
        part = get_part(part_name or "atmega328p")
    except KeyError as exc:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: {exc.args[0]}. Grammar: {GRAMMAR}"
        ) from None
    faults = parse_faults(opt_str(url, "fault", None, grammar=GRAMMAR))
    sync_timeout = opt_float(url, "sync_timeout", 3.0, minimum=0.05, maximum=600, grammar=GRAMMAR)
    retries = opt_int(url, "retries", None, minimum=1, maximum=1000, grammar=GRAMMAR)
    return {
        "baudrate": baud,
        "part": part,
        "faults": faults,
        "sync_timeout": sync_timeout,
        "retries": retries,
    }


def validate(url: str | DeviceURL) -> None:
    """Check a ``sim:arduino`` URL without starting anything; DeviceURLError if bad."""
    _options(parse_device_url(url))


class SimulatedArduinoProgrammer(Stk500Programmer):
    """The native STK500 driver on a simulated board it owns (stopped on close())."""

    scheme = "sim"
    page_write_seconds = 0.0

    def __init__(self, url: str | DeviceURL, *, board: SimulatedArduino, **kwargs: Any) -> None:
        self.board = board
        super().__init__(url, port=board.tty_path, part=board.part, reset="none", **kwargs)

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
    board = SimulatedArduino(opts["baudrate"], opts["part"], opts["faults"])
    board.start()
    try:
        # leased under the pty's real path, the key an stk500: URL on the same tty gets; the
        # board is new, so an earlier holder of a reused /dev/pts/N is not its concern
        return open_with_lease(
            path_key(board.tty_path),
            lambda lease: SimulatedArduinoProgrammer(
                parsed,
                board=board,
                baudrate=opts["baudrate"],
                sync_timeout=opts["sync_timeout"],
                retries=opts["retries"],
                name=name,
                lease=lease,
            ),
            fresh=True,
        )
    except BaseException:
        board.stop()
        raise
