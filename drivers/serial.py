"""``serial:``: a Console on pyserial.

``serial:PORT?baudrate=115200&timeout=1&write_timeout=5&bytesize=8&parity=N&stopbits=1``
``&rtscts=false&xonxoff=false&dsrdtr=false&exclusive=true``

* ``PORT`` is anything ``serial.serial_for_url`` takes: a device path (``/dev/ttyUSB0``,
  ``/dev/serial/by-id/...``) or a pyserial URL (``rfc2217://pi-7:4001``,
  ``socket://host:port``, ``loop://``). pyserial's own URL options (after a ``?``) cannot be
  given, since the ``?`` starts this URL's options.
* ``timeout``: default seconds a read waits when the call gives none (default 1).
* ``exclusive``: lock a local port against other programs (default true). A port another
  program holds locked gives DeviceBusyError naming that program (pid and command line).

A device path is leased under its real path, a network URL under the URL; ``loop://`` is
private to its handle and not leased. Each read/readline/expect call waits at most its timeout;
bytes read past an ``expect`` match stay buffered for the next call. Each is a tracked
operation of the device: ``safe()`` (or the end of a session) cancels it, which wakes a blocked
read at once on ports that support it (device paths, ``loop://``) and raises
OperationCancelled in the reader; on network ports it ends at the read's own timeout.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .base import Device
from .capabilities import console_pattern, console_timeout, take_line
from .errors import DeviceIOError, DeviceTimeoutError
from .lease import DeviceLease
from .operations import Operation
from .serial_ports import lease_key, open_serial, set_read_timeout
from .urls import DeviceURL, opt_bool, opt_choice, opt_float, opt_int, reject_unknown

__all__ = ["SerialConsole", "open_url", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "serial:PORT?baudrate=115200&timeout=1&write_timeout=5&bytesize=8&parity=N|E|O|M|S"
    "&stopbits=1|1.5|2&rtscts=false&xonxoff=false&dsrdtr=false&exclusive=true "
    "(PORT: /dev/ttyUSB0, rfc2217://host:port, socket://host:port, loop://)"
)
_OPTIONS = {
    "baudrate",
    "timeout",
    "write_timeout",
    "bytesize",
    "parity",
    "stopbits",
    "rtscts",
    "xonxoff",
    "dsrdtr",
    "exclusive",
}


def serial_settings(url: DeviceURL, grammar: str = GRAMMAR) -> dict[str, Any]:
    """pyserial keyword arguments from a serial-like URL's options (also used by stk500)."""
    settings: dict[str, Any] = {
        "baudrate": opt_int(
            url, "baudrate", 115200, minimum=50, maximum=12_000_000, grammar=grammar
        ),
        "bytesize": opt_int(url, "bytesize", 8, minimum=5, maximum=8, grammar=grammar),
        "parity": opt_choice(
            url, "parity", ["n", "e", "o", "m", "s"], "n", grammar=grammar
        ).upper(),
        "stopbits": float(opt_choice(url, "stopbits", ["1", "1.5", "2"], "1", grammar=grammar)),
        "rtscts": opt_bool(url, "rtscts", False, grammar=grammar),
        "xonxoff": opt_bool(url, "xonxoff", False, grammar=grammar),
        "dsrdtr": opt_bool(url, "dsrdtr", False, grammar=grammar),
        "write_timeout": opt_float(url, "write_timeout", 5.0, minimum=0.0, grammar=grammar),
    }
    if settings["stopbits"] == 1.0 or settings["stopbits"] == 2.0:
        settings["stopbits"] = int(settings["stopbits"])
    if "://" not in url.target:
        settings["exclusive"] = opt_bool(url, "exclusive", True, grammar=grammar)
    return settings


class SerialConsole(Device):
    """A Console (read, write, readline, expect) on a pyserial port."""

    scheme = "serial"

    def __init__(
        self, url: DeviceURL, *, name: str | None, lease: DeviceLease | None, port: Any
    ) -> None:
        super().__init__(url, name=name, lease=lease)
        self.port = port
        self.target = url.target
        self.timeout = float(opt_float(url, "timeout", 1.0, minimum=0.0, grammar=GRAMMAR))
        self._buf = bytearray()

    # -- Console ----------------------------------------------------------------------------
    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _check_port(self) -> None:
        if not getattr(self.port, "is_open", True):
            raise DeviceIOError(
                f"{self.label}: the port failed earlier and was closed (unplugged?); open the "
                f"device again with open_device({self.url!r})"
            )

    @contextmanager
    def _reading(self, what: str) -> Iterator[Operation]:
        """Track a read as an operation; a cancel wakes a blocked read where pyserial can."""
        self._check_open()
        with self.ops.operation(what) as op:
            cancel_read = getattr(self.port, "cancel_read", None)
            if callable(cancel_read):
                op.on_cancel(lambda _reason: cancel_read())
            yield op

    def _fill(self, op: Operation, deadline: float, want: int = 1) -> bool:
        """Read at least one byte (up to ``want`` + what is waiting) before ``deadline``.

        False when the deadline passed with nothing read; OperationCancelled when cancelled.
        A read that returns early and empty (a stale cancel_read wake-up) just reads again.
        """
        import serial

        while True:
            op.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._check_port()
            try:
                set_read_timeout(self.port, remaining)
                chunk = self.port.read(max(1, want))
                if chunk:
                    waiting = self.port.in_waiting
                    if waiting:
                        chunk += self.port.read(waiting)
            except (serial.SerialException, OSError) as exc:
                raise DeviceIOError(
                    f"{self.label}: reading failed: {exc}. Was the device unplugged or reset?"
                ) from exc
            if chunk:
                self._buf += chunk
                return True

    def read(self, n: int = 1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes: returns when ``n`` arrived or ``timeout`` s passed (maybe b"")."""
        with self._reading("read") as op:
            deadline = self._deadline(timeout)
            while len(self._buf) < n and self._fill(op, deadline, n - len(self._buf)):
                pass
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data

    def readline(self, timeout: float | None = None) -> bytes:
        """One line including b"\\n", or what arrived before ``timeout`` s passed."""
        with self._reading("readline") as op:
            deadline = self._deadline(timeout)
            while b"\n" not in self._buf and self._fill(op, deadline):
                pass
            return take_line(self._buf)

    def expect(self, pattern: bytes | str | re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        """Read until ``pattern`` matches; consumes through the match. DeviceTimeoutError if not."""
        regex = console_pattern(pattern)
        with self._reading("expect") as op:
            deadline = self._deadline(timeout)
            while True:
                match = regex.search(bytes(self._buf))
                if match:
                    del self._buf[: match.end()]
                    return match
                if not self._fill(op, deadline):
                    raise console_timeout(self.label, regex, timeout, self._buf)

    def write(self, data: bytes) -> int:
        import serial

        self._check_open()
        if isinstance(data, str):
            raise TypeError("write() takes bytes; encode the text first (e.g. text.encode())")
        self._check_port()
        try:
            written = self.port.write(data)
            self.port.flush()
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeoutError(f"{self.label}: write timed out: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            raise DeviceIOError(f"{self.label}: writing failed: {exc}") from exc
        return int(written or 0)

    # -- Device hooks -----------------------------------------------------------------------
    def _drive_safe(self) -> dict[str, Any]:
        """A console has no actuator: drop pending input so the next reader starts clean.

        A port that is gone (unplugged) drives nothing either, so that is safe too: the dead
        handle is closed and the state says ``open: false`` with the error; later reads and
        writes fail with DeviceIOError until the device is opened again.
        """
        import serial

        dropped = len(self._buf)
        self._buf.clear()
        if not getattr(self.port, "is_open", True):  # closed by an earlier failure
            return {"port": self.target, "open": False, "dropped_bytes": dropped}
        try:
            waiting = self.port.in_waiting
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            log.warning("%s: the port is gone (%s); closed it", self.label, exc)
            self._close()
            return {"port": self.target, "open": False, "dropped_bytes": dropped, "error": str(exc)}
        return {"port": self.target, "open": True, "dropped_bytes": dropped + waiting}

    def _close(self) -> None:
        try:
            self.port.close()
        except Exception:
            log.exception("closing %s failed", self.label)

    def _describe(self) -> dict[str, Any]:
        return {"port": self.target, "baudrate": self.port.baudrate, "timeout": self.timeout}


def validate(url: DeviceURL) -> None:
    reject_unknown(url, _OPTIONS, GRAMMAR)
    serial_settings(url)
    opt_float(url, "timeout", 1.0, minimum=0.0, grammar=GRAMMAR)


def open_url(url: DeviceURL, *, name: str | None = None) -> SerialConsole:
    validate(url)
    key = lease_key(url)
    lease = DeviceLease.acquire(key) if key else None
    try:
        port = open_serial(url.target, serial_settings(url), f"serial port {url.target!r}")
        device = SerialConsole(url, name=name, lease=lease, port=port)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    device.safe()
    return device
