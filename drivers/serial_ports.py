"""pyserial ports for serial-like drivers: open with clear errors, name a port's holder.

:func:`open_serial` wraps ``serial.serial_for_url``: a missing port, a permission problem or a
refused connection becomes DeviceIOError with a hint, and a port that another program has open
(:func:`other_openers`, from /proc/*/fd) or holds locked (``exclusive``, from /proc/locks)
becomes DeviceBusyError naming that program.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from .errors import DeviceBusyError, DeviceIOError
from .lease import lock_holders, path_key
from .urls import DeviceURL

__all__ = ["lease_key", "open_serial", "other_openers", "set_read_timeout"]


def open_serial(port: str, settings: dict[str, Any], what: str) -> Any:
    """``serial.serial_for_url`` with errors turned into DeviceIOError with a hint.

    A local device node another program has open (screen, minicom, a script: with or without
    a lock) is refused first, naming that program: talking over it would crash it or garble
    the programming."""
    import serial

    if "://" not in port:
        users = other_openers(port)
        if users:
            who = "; ".join(f"pid {u['pid']} ({_command_line(u['argv'])})" for u in users)
            raise DeviceBusyError(
                f"{what} is busy: held by {who}, which has it open. Stop that program first "
                "(a terminal such as screen or minicom, or a script): it would crash, or "
                "garble what labruntime sends",
                holder={**users[0], "host": socket.gethostname()},
            )
    try:
        return serial.serial_for_url(port, **settings)
    except (serial.SerialException, OSError, ValueError) as exc:
        if "exclusively lock" in str(exc):
            raise _port_busy(port, what) from exc
        raise DeviceIOError(f"cannot open {what}: {exc}. {_hint(exc)}") from exc


def other_openers(path: str) -> list[dict[str, Any]]:
    """Other processes (pid, argv) that have the device node ``path`` open, from Linux
    ``/proc/*/fd`` (only those this user may look at; empty where /proc is missing)."""
    try:
        target = os.path.realpath(path)
        if not os.path.exists(target) or not os.path.isdir("/proc/self/fd"):
            return []
    except OSError:
        return []
    me = os.getpid()
    found: list[dict[str, Any]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            links = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:  # gone, or another user's process
            continue
        with links:
            opened = False
            for fd in links:
                try:
                    opened = os.readlink(fd.path) == target
                except OSError:
                    continue
                if opened:
                    break
        if opened:
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            except OSError:
                argv = []
            found.append({"pid": int(entry.name), "argv": argv})
    return found


def _port_busy(port: str, what: str) -> DeviceBusyError:
    """A port another program holds with an exclusive lock: name that program if we can."""
    users = lock_holders(port) if "://" not in port else []
    if users:
        holder = {**users[0], "host": socket.gethostname()}
        who = "; ".join(f"pid {u['pid']} ({_command_line(u['argv'])})" for u in users)
        message = (
            f"{what} is busy: held by {who}. Stop that program first: it holds the port "
            "outside labruntime's device leases"
        )
    else:
        holder = None
        message = f"{what} is busy: another program holds it locked. Find it with: fuser {port}"
    return DeviceBusyError(message, holder=holder)


def _command_line(argv: list[str], limit: int = 400) -> str:
    text = " ".join(" ".join(argv).split()) or "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code == errno.ENOENT or "no such file" in text:
        return "Check the cable and the port name (ls /dev/serial/by-id/)"
    if code == errno.EACCES or "permission" in text:
        return "Check the permissions: add the user to the 'dialout' group"
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in text or "busy" in text:
        return "Is another process using the port? (fuser PORT)"
    if "connection refused" in text or "timed out" in text:
        return "Check that the serial server is running and reachable"
    return "Check the cable, the port name, the 'dialout' group, and that no other process uses it"


def set_read_timeout(port: Any, seconds: float) -> None:
    """Set the timeout of the next read without pyserial's reconfigure round trip.

    pyserial's ``timeout`` setter calls ``_reconfigure_port()`` (tcsetattr on a tty, a
    renegotiation on rfc2217://) although reads only consult ``_timeout``; every pyserial 3.x
    handler reads it from there, so set it directly when it exists.
    """
    if hasattr(port, "_timeout"):
        port._timeout = seconds
    else:
        port.timeout = seconds


def lease_key(url: DeviceURL) -> str | None:
    """Lease key of a serial-like target: real path, URL without options, None for loop://."""
    if url.target.startswith("loop://"):
        return None
    if "://" in url.target:
        return url.target
    return path_key(url.target)
