"""The AVR twin's process: simavr running a chip in real time, its UART on a pty, its pins.

:class:`AvrTwin` starts the compiled harness (``avr_twin.c``, see :mod:`.avr_build`) as a
subprocess and follows it over a socket pair: pin changes, UART bytes, resets and simulated time
arrive as text events, read by a thread; commands (reset, bytes for the RX line, input levels,
quit) go the other way. The chip's UART0 is a pseudo-terminal at :attr:`AvrTwin.tty_path`, which
a programmer (the native ``stk500:`` driver, avrdude) opens like an Arduino's USB serial port:
opening it resets the chip as an Uno's DTR line does, and Optiboot answers::

    with AvrTwin() as twin:                       # an ATmega328P at 16 MHz booting Optiboot
        twin.tty_path                             # e.g. /tmp/labruntime-avr-4242-x1/ttyTWIN
        ...                                       # avrdude -c arduino -P tty_path -U flash:w:...
        twin.level("PB5")                         # the Uno's LED, as the program drives it
        twin.sim_seconds                          # simulated time since power-on

Process model: one harness per twin, in a private run folder (the tty symlink and the
harness's log). The harness exits within a millisecond of its control socket closing, which
happens when this process ends however it ends (the socket is close-on-exec, and a child
forked without exec closes its copy at once, so no other process keeps it open);
:meth:`stop` asks it to quit, kills it after 2 s, and removes the folder. Folders left by a
process that died without stopping are removed by the next :meth:`start`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import DeviceIOError, DeviceTimeoutError
from .avr_build import Bootloader, build_bootloader, build_harness
from .avr_pins import PinEdge, parse_pin
from .run_dirs import make_run_dir

__all__ = ["AvrTwin"]

log = logging.getLogger(__name__)

_RUN_PREFIX = "labruntime-avr-"
_READY_TIMEOUT = 10.0
_TAP_LIMIT = 1 << 20  # bytes of UART output kept for a reader that is not reading
_EDGE_LIMIT = 100_000  # port changes kept per port


class AvrTwin:
    """One simulated chip in its harness process (see the module docstring)."""

    def __init__(
        self,
        mcu: str = "atmega328p",
        f_cpu: int = 16_000_000,
        baudrate: int = 115200,
        *,
        bootloader: Bootloader | None = None,
        startup_ms: float = 65.0,
        autoreset: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.mcu = mcu
        self.f_cpu = int(f_cpu)
        self.baudrate = int(baudrate)
        self.startup_ms = float(startup_ms)
        self.autoreset = autoreset
        self._cache_dir = cache_dir
        self.bootloader = bootloader
        self.pts_path: str | None = None
        self._dir: str | None = None
        self._link: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._ready = False
        self._exited = False
        self.cycle = 0  # latest simulated cycle reported
        self._ports: dict[str, tuple[int, int]] = {}
        self._edges: dict[str, deque[tuple[int, int, int]]] = {}
        self._driven: dict[tuple[str, int], bool] = {}
        self._tap = bytearray()
        self._tap_listeners: list[Callable[[bytes], None]] = []
        self.host_open = False
        self.resets: list[tuple[int, str]] = []
        self.halted: str | None = None
        self.lag_ms = 0
        self.rx_lost = 0
        self.tx_bytes = 0
        self._started_wall = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def run_dir(self) -> str:
        """The twin's private folder (its tty symlink and the harness's log)."""
        if self._dir is None:
            raise RuntimeError("the twin is not running; call start() first")
        return self._dir

    @property
    def tty_path(self) -> str:
        if self._link is None:
            raise RuntimeError("the twin is not running; call start() first")
        return self._link

    def start(self) -> str:
        """Build what is missing, start the harness, wait until it is ready; the tty path."""
        if self._proc is not None:
            return self.tty_path
        harness = build_harness(self._cache_dir)
        if self.bootloader is None:
            self.bootloader = build_bootloader(self.mcu, self.f_cpu, self._cache_dir)
        self._dir = make_run_dir(_RUN_PREFIX)  # stale ones (kill -9) removed
        self._link = os.path.join(self._dir, "ttyTWIN")
        ours, theirs = socket.socketpair()
        cmd = [
            str(harness),
            "--mcu",
            self.mcu,
            "--freq",
            str(self.f_cpu),
            "--baud",
            str(self.baudrate),
            "--boot",
            str(self.bootloader.path),
            "--boot-addr",
            hex(self.bootloader.base),
            "--link",
            self._link,
            "--ctl-fd",
            str(theirs.fileno()),
            "--startup-ms",
            str(self.startup_ms),
        ]
        if not self.autoreset:
            cmd.append("--no-autoreset")
        try:
            with open(os.path.join(self._dir, "harness.log"), "wb") as logfile:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    pass_fds=[theirs.fileno()],
                )
        except OSError as exc:
            ours.close()
            theirs.close()
            self._remove_dir()
            raise DeviceIOError(f"cannot start the AVR twin ({harness}): {exc}") from exc
        theirs.close()
        self._sock = ours
        _twins.add(self)
        self._started_wall = time.monotonic()
        self._reader = threading.Thread(target=self._read_events, name="avr-twin", daemon=True)
        self._reader.start()
        with self._cond:
            ready = self._cond.wait_for(lambda: self._ready or self._exited, _READY_TIMEOUT)
        if not ready or not self._ready:
            why = self.log_tail() or "no output"
            self.stop()
            raise DeviceIOError(f"the AVR twin did not start: {why}")
        log.info(
            "AVR twin: %s at %.3g MHz, UART %d baud on %s (%s), %s",
            self.mcu,
            self.f_cpu / 1e6,
            self.baudrate,
            self._link,
            self.pts_path,
            self.bootloader.source,
        )
        return self._link

    def stop(self) -> None:
        """Stop the harness (quit, then kill after 2 s), remove the run folder. Idempotent."""
        proc, self._proc = self._proc, None
        sock, self._sock = self._sock, None
        if proc is not None:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(b"quit\n")
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(2.0)
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._link = None

    def __enter__(self) -> AvrTwin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 8) -> str:
        """The last lines the harness wrote (simavr's warnings, errors)."""
        if self._dir is None:
            return ""
        try:
            text = Path(self._dir, "harness.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    # -- commands ---------------------------------------------------------------------------
    def _send(self, line: str) -> None:
        sock = self._sock
        if sock is None or not self.running:
            raise DeviceIOError(
                f"the AVR twin is not running{': ' + self.log_tail(3) if self._dir else ''}"
            )
        with self._send_lock:
            try:
                sock.sendall(line.encode("ascii") + b"\n")
            except OSError as exc:
                raise DeviceIOError(f"the AVR twin stopped answering: {exc}") from exc

    def reset(self) -> None:
        """Pulse the reset line (the chip restarts after its start-up time, EXTRF set)."""
        self._send("reset")

    def send(self, data: bytes) -> None:
        """Put ``data`` on the chip's RX line (paced at the baud rate, after pending bytes)."""
        for i in range(0, len(data), 1024):
            self._send("rx " + data[i : i + 1024].hex())

    def drive(self, pin: str | int, level: bool | None) -> None:
        """Drive an input pin from outside (a button), or release it (``None``: pulled low)."""
        port, bit = parse_pin(pin)
        if level is None:
            self._driven.pop((port, bit), None)
            level = False
        else:
            self._driven[(port, bit)] = bool(level)
        self._send(f"pin {port} {bit} {int(bool(level))}")

    def release_driven(self) -> list[str]:
        """Stop driving every input driven with :meth:`drive`; the pins released."""
        pins = [f"P{port}{bit}" for port, bit in list(self._driven)]
        for pin in pins:
            self.drive(pin, None)
        return pins

    # -- state ------------------------------------------------------------------------------
    @property
    def sim_seconds(self) -> float:
        """Simulated time since power-on (latest report; at most ~50 ms old)."""
        return self.cycle / self.f_cpu

    @property
    def realtime_ratio(self) -> float:
        """Simulated seconds per wall-clock second since start (1.0 when it keeps up)."""
        wall = time.monotonic() - self._started_wall
        return self.sim_seconds / wall if wall > 0 else 0.0

    def pin_state(self, pin: str | int) -> tuple[str, bool]:
        """``("out", level)`` for an output, ``("in", level)`` for an input.

        An input reads what drives it from outside (:meth:`drive`), else its pull-up (PORT bit
        set: high), else low.
        """
        port, bit = parse_pin(pin)
        with self._cond:
            ddr, value = self._ports.get(port, (0, 0))
        if ddr >> bit & 1:
            return "out", bool(value >> bit & 1)
        if (port, bit) in self._driven:
            return "in", self._driven[(port, bit)]
        return "in", bool(value >> bit & 1)

    def level(self, pin: str | int) -> bool:
        """The pin's level: True = high."""
        return self.pin_state(pin)[1]

    def edges(self, pin: str | int) -> list[PinEdge]:
        """Every change of the pin's output level seen so far (up to the last 100 000)."""
        port, bit = parse_pin(pin)
        with self._cond:
            history = list(self._edges.get(port, ()))
        out: list[PinEdge] = []
        last: bool | None = None
        for cycle, ddr, value in history:
            level = bool(ddr >> bit & 1) and bool(value >> bit & 1)
            if level != last:
                out.append(PinEdge(cycle, cycle / self.f_cpu, level))
                last = level
        return out

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` (checked on every event) is true; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self._exited:
                    return predicate()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.5))
            return True

    def wake(self) -> None:
        """Wake every wait_until() to re-check its predicate (e.g. after a cancel)."""
        with self._cond:
            self._cond.notify_all()

    def wait_sim_time(self, seconds: float, timeout: float) -> None:
        """Block until the simulated clock reads ``seconds``; DeviceTimeoutError if not."""
        if not self.wait_until(lambda: self.sim_seconds >= seconds, timeout):
            raise DeviceTimeoutError(
                f"the AVR twin's clock reads {self.sim_seconds:.3f} s, not {seconds:.3f} s, after "
                f"{timeout:g} s of wall time"
            )

    # -- the UART tap -----------------------------------------------------------------------
    def take_output(self) -> bytes:
        """Everything the chip sent on its UART since the last call (also what a host read)."""
        with self._cond:
            data = bytes(self._tap)
            self._tap.clear()
            return data

    def add_output_listener(self, listener: Callable[[bytes], None]) -> None:
        """Call ``listener(data)`` (in the reader thread) for every chunk the chip sends."""
        self._tap_listeners.append(listener)

    # -- events -----------------------------------------------------------------------------
    def _read_events(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = b""
        try:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                with self._cond:
                    for line in lines:
                        self._event(line.decode("ascii", "replace").split())
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._exited = True
                self._cond.notify_all()
            if self._proc is not None:
                log.info("the AVR twin's harness exited: %s", self.log_tail(3) or "no message")

    def _event(self, words: list[str]) -> None:
        if not words:
            return
        kind = words[0]
        try:
            if kind == "port":
                port, ddr, value, cycle = (
                    words[1],
                    int(words[2], 16),
                    int(words[3], 16),
                    int(words[4]),
                )
                self._ports[port] = (ddr, value)
                self._edges.setdefault(port, deque(maxlen=_EDGE_LIMIT)).append((cycle, ddr, value))
                self.cycle = max(self.cycle, cycle)
            elif kind == "tx":
                self.cycle = max(self.cycle, int(words[1]))
                data = bytes.fromhex(words[2]) if len(words) > 2 else b""
                self.tx_bytes += len(data)
                self._tap += data
                if len(self._tap) > _TAP_LIMIT:
                    del self._tap[: len(self._tap) - _TAP_LIMIT]
                for listener in list(self._tap_listeners):
                    try:
                        listener(data)
                    except Exception:
                        log.exception("an AVR twin output listener failed")
            elif kind == "time":
                self.cycle = max(self.cycle, int(words[1]))
            elif kind == "reset":
                self.cycle = max(self.cycle, int(words[1]))
                self.resets.append((int(words[1]), words[2]))
                del self.resets[:-100]
                self.halted = None
            elif kind == "halt":
                self.halted = words[2]
                log.info(
                    "AVR twin: the program stopped (%s: e.g. a blank chip whose boot loop ran "
                    "out of stack); the next reset or upload starts it again",
                    words[2],
                )
            elif kind == "open":
                self.host_open = True
            elif kind == "close":
                self.host_open = False
            elif kind == "lag":
                self.lag_ms += int(words[2])
            elif kind == "overrun":
                self.rx_lost = int(words[2])
            elif kind == "ready":
                self.pts_path = words[1]
                self._ready = True
        except (IndexError, ValueError):
            log.debug("AVR twin: bad event %r", words)

    def describe(self) -> dict[str, object]:
        return {
            "mcu": self.mcu,
            "f_cpu": self.f_cpu,
            "baudrate": self.baudrate,
            "tty": self._link,
            "pts": self.pts_path,
            "bootloader": None if self.bootloader is None else self.bootloader.source,
            "sim_seconds": round(self.sim_seconds, 3),
            "realtime_ratio": round(self.realtime_ratio, 3),
            "lag_ms": self.lag_ms,
            "resets": len(self.resets),
            "halted": self.halted,
            "rx_lost": self.rx_lost,
            "host_open": self.host_open,
        }


_twins: weakref.WeakSet[AvrTwin] = weakref.WeakSet()


def _forget_in_child() -> None:
    """In a child forked without exec: drop the parent's twins (their sockets, their process)."""
    for twin in list(_twins):
        sock, twin._sock, twin._proc, twin._dir, twin._link = twin._sock, None, None, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


os.register_at_fork(after_in_child=_forget_in_child)
