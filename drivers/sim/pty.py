"""A pseudo-terminal standing in for a board's USB serial port (Linux).

:class:`SerialPty` gives a host a stable path to open with pyserial or avrdude: a symlink in a
private temporary directory to the current ``/dev/pts/N``. The simulator keeps the master
side and learns from it:

* when a host opens and closes the port: inotify on the slave queues every open and close, so
  a close followed at once by an open is not missed (the simulator resets the board on the
  first open, as an Uno's DTR does; the pty itself has no modem lines);
* the baud rate the host set (a pty's termios are shared by both sides);
* what the host writes, and it hands back the board's replies.

:meth:`SerialPty.replace` pulls the cable: the old pty is gone (the host's reads fail with an
I/O error) and a new one is in place at the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import struct
import termios
import tty

__all__ = ["SerialPty"]

#: termios speed constants -> bits per second
_SPEEDS = {getattr(termios, n): int(n[1:]) for n in dir(termios) if re.fullmatch(r"B\d+", n)}
#: ioctl TCGETS2 (asm-generic): struct termios2, whose c_ospeed is at offset 40
_TCGETS2 = 0x802C542A
_IN_OPEN = 0x20
_IN_CLOSE = 0x08 | 0x10  # IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class SerialPty:
    """The master side of a pty, its stable path, and the host's opens and closes."""

    def __init__(self, directory: str, name: str = "ttyARDUINO") -> None:
        self.path = os.path.join(directory, name)
        self.pts_path = ""
        self.master = -1
        #: inotify descriptor: readable when the host opened or closed the port
        self.events = -1
        self.host_open = False
        self._opens = 0

    def create(self) -> None:
        """A new pty at :attr:`path` (switched atomically); the previous one stays open."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            pts = os.ttyname(slave)
        finally:
            os.close(slave)  # closed until a host opens it
        try:
            events = _watch_opens(pts)
        except OSError:
            os.close(master)
            raise
        self.master, self.events, self.pts_path = master, events, pts
        self.host_open, self._opens = False, 0
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(pts, tmp)
        os.replace(tmp, self.path)

    def replace(self) -> None:
        """Pull the cable: a new pty at the same path, then the old one closes."""
        old = (self.master, self.events)
        self.create()
        for fd in old:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        for fd in (self.master, self.events):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.events = -1
        self.host_open = False

    def port_changes(self) -> list[bool]:
        """What happened to the port since last asked: True for an open, False for a close.

        Only the first open (no other holder) and the last close count, as for DTR.
        """
        try:
            raw = os.read(self.events, 4096)
        except (BlockingIOError, OSError):
            return []
        changes: list[bool] = []
        offset = 0
        while offset + _EVENT.size <= len(raw):
            _, mask, _, length = _EVENT.unpack_from(raw, offset)
            offset += _EVENT.size + length
            if mask & _IN_OPEN:
                self._opens += 1
                if self._opens == 1:
                    changes.append(True)
            elif mask & _IN_CLOSE and self._opens > 0:
                self._opens -= 1
                if self._opens == 0:
                    changes.append(False)
        if changes:
            self.host_open = changes[-1]
        return changes

    def host_rate(self) -> int | None:
        """The baud rate the host set on the port, or None if it cannot be read."""
        try:
            speed = termios.tcgetattr(self.master)[5]
        except termios.error:
            return None
        if speed in _SPEEDS:
            return _SPEEDS[speed]
        try:  # BOTHER: a custom rate, in struct termios2
            raw = fcntl.ioctl(self.master, _TCGETS2, bytes(44))
        except OSError:
            return None
        return int(struct.unpack_from("I", raw, 40)[0])

    def read(self) -> bytes | None:
        """What the host wrote (b"" if nothing yet); None if the host is gone (EIO)."""
        try:
            return os.read(self.master, 4096)
        except BlockingIOError:
            return b""
        except OSError:
            return None

    def write(self, data: bytes) -> bool:
        """Hand ``data`` to the host; False if it could not take it (not reading, or gone)."""
        try:
            return os.write(self.master, data) == len(data)
        except OSError:
            return False


def _watch_opens(path: str) -> int:
    """An inotify descriptor reporting the opens and closes of ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_init1: {os.strerror(err)}")
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_OPEN | _IN_CLOSE) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch({path}): {os.strerror(err)}")
    return fd
