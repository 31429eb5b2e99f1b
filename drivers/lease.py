"""Device leases: one process holds a device for its lifetime.

A lease is an exclusive ``fcntl.flock`` on one lock file per device, held as long as the
holder keeps it (normally the life of the worker process that owns the hardware). The kernel
drops the lock when the holder dies, even by ``kill -9``, so a crashed holder never blocks the
device. The file itself stays; it holds JSON about the current (or last) holder::

    {"pid": 1234, "argv": ["labruntime", "run-tasks", ...], "host": "pi-7",
     "since": "2026-11-26T00:10:00+00:00", "key": "/dev/ttyACM0", "clean": false}

``clean`` turns true on a clean release, so the next holder learns (``previous_unclean``)
that the last one died holding the device, which may have been left mid-operation. Drivers
drive the device safe at open anyway. The file of a device node that is gone (a simulator's
pty, a port unplugged for good), released cleanly, is removed by the next acquirer's sweep.

Lock directory: ``$LABRUNTIME_LOCK_DIR``, else ``/run/lock/labruntime`` shared by the users of
the lab's group (``labruntime``, or ``$LABRUNTIME_LOCK_GROUP``), so ``labruntime device
program`` run as ``pi`` sees the leases of the service running as ``lab``; else, when it does
not exist and this process is not root, a per-user directory, ``$XDG_RUNTIME_DIR/labruntime`` or
``/tmp/labruntime-<uid>`` (owned by the user, closed to others). On a Pi, create the shared
one at boot: ``d /run/lock/labruntime 3770 root labruntime -`` in ``/etc/tmpfiles.d`` (see
config/README.md); root creates it so when it is missing.

Trust, on a machine shared by several users (:func:`shared_lock_dir`):

- the shared directory is used only if root owns it, or the lab's group does, and others
  cannot write it unless it is sticky and root's (like ``/run/lock``). One another user
  created first (``/run/lock`` is an empty 1777 tmpfs after a reboot) is refused with
  :class:`DeviceIOError` saying what to do, rather than trusted;
- lease files are mode 0660 (the lab's group through the directory's setgid bit): others
  can neither write them nor even open them to ``flock`` them. A lease file owned by someone
  who is neither this user, root nor the lab's group, or that others may write, is refused;
  a file is never opened through a symlink;
- the holder named in a busy error is the one the kernel reports (``/proc/locks``: its pid,
  its command line from ``/proc``), never only what the file says, which its writers could
  forge.

Keys: the real path of a tty for serial-like devices (:func:`path_key`), the pin for GPIO, the
URL otherwise. A second acquirer, in another process or in the same one, gets
:class:`DeviceBusyError` naming the holder.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import grp
import hashlib
import json
import logging
import os
import re
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import DeviceBusyError, DeviceIOError

__all__ = [
    "SHARED_LOCK_DIR",
    "DeviceLease",
    "lock_dir",
    "lock_holders",
    "path_key",
    "shared_lock_dir",
]

log = logging.getLogger(__name__)


#: The lock directory every user shares by default (see the module docstring).
SHARED_LOCK_DIR = Path("/run/lock/labruntime")
#: The group of the users sharing the devices of a machine (``$LABRUNTIME_LOCK_GROUP``).
LOCK_GROUP = "labruntime"
LEASE_FILE_MODE = 0o660


def lock_group() -> tuple[str, int | None]:
    """The lab's group: its name and gid (None when no such group exists here)."""
    name = os.environ.get("LABRUNTIME_LOCK_GROUP") or LOCK_GROUP
    try:
        return name, grp.getgrnam(name).gr_gid
    except KeyError:
        return name, None


def lock_dir() -> Path:
    """The directory holding lease files (see the module docstring for the order)."""
    explicit = os.environ.get("LABRUNTIME_LOCK_DIR")
    if explicit:
        return Path(explicit)
    shared = shared_lock_dir(SHARED_LOCK_DIR)
    if shared is not None:
        return shared
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        private = Path(runtime) / "labruntime"
    else:
        private = Path(f"/tmp/labruntime-{os.getuid()}")
    with contextlib.suppress(OSError):
        private.mkdir(mode=0o700)
    _check_private_dir(private)
    return private


def _describe(st: os.stat_result) -> str:
    try:
        import pwd

        owner = pwd.getpwuid(st.st_uid).pw_name
    except (KeyError, ImportError):
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"owner {owner}, group {group}, mode {stat.S_IMODE(st.st_mode):04o}"


def shared_lock_dir(path: Path) -> Path | None:
    """``path`` if it is a directory the users of this machine may trust for leases; None if
    it does not exist and this process may not create it (not root). Raises DeviceIOError
    for one that exists and must not be trusted (see the module docstring)."""
    name, gid = lock_group()
    if os.geteuid() == 0:
        try:
            path.mkdir(mode=0o700)
        except OSError:
            pass  # there already, or no /run/lock: looked at below
        else:
            # root:<group> 3770 (setgid: files get the group; sticky: only owners remove
            # them); without the group, like /run/lock: root's, sticky, world-writable
            os.chown(path, 0, gid if gid is not None else 0)
            os.chmod(path, 0o3770 if gid is not None else 0o1777)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("no shared lock directory %s: %s", path, exc.strerror)
        return None
    if _trusted_dir(st, gid):
        return path
    raise DeviceIOError(
        f"the shared device lock directory {path} is not to be trusted ({_describe(st)}): it "
        f"must be a directory of root or of the group {name!r} that others cannot write "
        "(another user may have created it first). Remove it as root, then create it at boot "
        f"with 'd {path} 3770 root {name} -' in /etc/tmpfiles.d (see config/README.md), or "
        "set LABRUNTIME_LOCK_DIR"
    )


def _trusted_dir(st: os.stat_result, gid: int | None) -> bool:
    if not stat.S_ISDIR(st.st_mode):
        return False
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002:  # others may add files: only root's sticky dir keeps them apart
        return st.st_uid == 0 and bool(mode & stat.S_ISVTX)
    return st.st_uid == 0 or (gid is not None and st.st_gid == gid)


def _check_private_dir(directory: Path) -> None:
    """A per-user lock directory must be this user's and closed to others."""
    try:
        st = os.lstat(directory)
    except OSError:
        return
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid != os.geteuid()
        or stat.S_IMODE(st.st_mode) & 0o022
    ):
        raise DeviceIOError(
            f"the device lock directory {directory} is not this user's own ({_describe(st)}): "
            "another user may have created it. Remove it, or set LABRUNTIME_LOCK_DIR"
        )


def path_key(path: str) -> str:
    """Lease key of a device node: its real path, so symlinks (/dev/serial/by-id/...) agree."""
    return os.path.realpath(path)


def _file_name(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[:60] or "device"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}.lock"


def describe_holder(holder: dict[str, Any] | None) -> str:
    """A one-line description of a lease holder for error messages."""
    if not holder:
        return "another holder (its lease file could not be read)"
    pid = holder.get("pid")
    command = " ".join(str(a) for a in holder.get("argv") or []) or "?"
    if len(command) > 400:  # room for a venv's python, the script and its arguments
        command = command[:397] + "..."
    who = "this process" if pid == os.getpid() else "process"
    return (
        f"{who} pid {pid} ({command}) on {holder.get('host', '?')} since {holder.get('since', '?')}"
    )


def lock_holders(path: str) -> list[dict[str, Any]]:
    """Processes (pid, argv) holding a ``flock``/``fcntl`` lock on ``path``, from /proc/locks.

    For naming the holder of a port that a program outside labruntime (screen, minicom, a
    pyserial ``exclusive=True`` user) has locked. Empty where /proc is missing.
    """
    try:
        st = os.stat(path)
    except OSError:
        return []
    return _holders_of(st.st_dev, st.st_ino)


def _holders_of(dev: int, ino: int) -> list[dict[str, Any]]:
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    device = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    holders: list[dict[str, Any]] = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:3 0 EOF" ("->" marks a waiter)
        if len(fields) < 6 or "->" in fields or fields[5] != device:
            continue
        pid = int(fields[4]) if fields[4].lstrip("-").isdigit() else -1
        if pid <= 0 or any(h["pid"] == pid for h in holders):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
        except OSError:
            argv = []
        holders.append({"pid": pid, "argv": argv})
    return holders


class DeviceLease:
    """An exclusive lease on one device. Use :meth:`acquire`; release with :meth:`release`."""

    def __init__(self, key: str, path: Path, fd: int, previous: dict[str, Any] | None) -> None:
        self.key = key
        self.path = path
        self.previous = previous
        #: True if the previous holder died without a clean release.
        self.previous_unclean = previous is not None and previous.get("clean") is False
        self.since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._fd: int | None = fd
        self._lock = threading.Lock()

    @classmethod
    def acquire(
        cls, key: str, *, directory: Path | None = None, fresh: bool = False
    ) -> DeviceLease:
        """Take the lease on ``key`` or raise DeviceBusyError naming the holder.

        ``fresh=True`` for a device that did not exist before this open (a simulator on a
        new pty): what an earlier holder of the same key left behind is irrelevant to it, so
        ``previous_unclean`` is False and nothing is logged about it.
        """
        directory = directory or lock_dir()
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceIOError(
                f"cannot create the device lock directory {directory}: {exc.strerror}; "
                "set LABRUNTIME_LOCK_DIR to a writable directory"
            ) from exc
        path = directory / _file_name(key)
        try:
            fd = _open_lease_file(path)
        except DeviceIOError:
            raise  # a lease file not to be trusted: said so already
        except PermissionError as exc:
            holders = lock_holders(str(path))  # the kernel answers even if we cannot open it
            if holders:
                seen = {**holders[0], "host": socket.gethostname(), "from": "kernel"}
                raise DeviceBusyError(
                    f"device {key!r} is busy: held by {describe_holder(seen)}. Stop that "
                    "process first, or use another device",
                    holder=seen,
                ) from None
            raise DeviceIOError(
                f"cannot open the lease file {path} for device {key!r}: {exc.strerror} "
                f"({_describe_path(path)}); a user sharing the devices of this machine must "
                f"be in the group {lock_group()[0]!r} (sudo usermod -aG {lock_group()[0]} "
                "$USER, then log in again; see config/README.md)"
            ) from exc
        except OSError as exc:
            raise DeviceIOError(
                f"cannot open the lease file {path} for device {key!r}: {exc.strerror}; "
                "check the permissions of the lock directory (LABRUNTIME_LOCK_DIR)"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _kernel_holder(fd, _read(fd))
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DeviceIOError(f"cannot lock {path} for device {key!r}: {exc}") from exc
            raise DeviceBusyError(
                f"device {key!r} is busy: held by {describe_holder(holder)}. Stop that process "
                "(or close its handle) first, or use another device",
                holder=holder,
            ) from None
        if not _linked(fd, path):  # swept away before we locked it: lock the file there now
            os.close(fd)
            return cls.acquire(key, directory=directory, fresh=fresh)
        _sweep(directory, path)
        previous = None if fresh else _read(fd)
        lease = cls(key, path, fd, previous)
        lease._write(fd, clean=False)
        if lease.previous_unclean:
            log.warning(
                "device %r: the previous holder (%s) did not release it cleanly",
                key,
                describe_holder(previous),
            )
        return lease

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _write(self, fd: int, *, clean: bool) -> None:
        info = {
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "host": socket.gethostname(),
            "since": self.since,
            "key": self.key,
            "clean": clean,
        }
        data = json.dumps(info).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        """Mark the lease clean and drop it. Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self._write(fd, clean=True)
        except OSError:
            log.exception("could not mark the lease of %r clean", self.key)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DeviceLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<DeviceLease {self.key!r} held={self.held}>"


def _linked(fd: int, path: Path) -> bool:
    """True if ``path`` is still the file open on ``fd`` (not unlinked by a sweep)."""
    try:
        st, ours = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)


def _sweep(directory: Path, keep: Path) -> None:
    """Remove the lease files of device nodes that are gone (a simulator's pty, a USB port
    unplugged for good), released cleanly and held by nobody: lock files are not left for
    every port ever tried. A file is removed only while this process holds its lock, so an
    acquirer that opened it meanwhile finds it unlinked and takes the new one (:func:`_linked`)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.endswith(".lock") or entry.path == str(keep):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # another user's file, or gone already
        try:
            if not _gone(_read(fd)):  # looked at first without locking: a live one is never
                continue  # locked here, even for a moment (its acquirer would see it busy)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _gone(_read(fd)) and _linked(fd, Path(entry.path)):
                os.unlink(entry.path)
        except OSError:
            pass  # held (or not ours to remove): it stays
        finally:
            os.close(fd)


def _gone(info: dict[str, Any] | None) -> bool:
    """A lease file released cleanly whose device node no longer exists."""
    if not info or info.get("clean") is not True:
        return False
    key = str(info.get("key") or "")
    return key.startswith("/") and not os.path.exists(key)


def _describe_path(path: Path) -> str:
    try:
        return _describe(os.lstat(path))
    except OSError as exc:
        return exc.strerror or str(exc)


def _open_lease_file(path: Path) -> int:
    """Open (creating it mode 0660 if missing) a lease file, never through a symlink; refuse
    one that others may write or that belongs to a user outside the lab (see the module
    docstring).

    An existing file is opened without O_CREAT: in a sticky shared directory the kernel
    (fs.protected_regular) refuses O_CREAT on another user's file even when it exists.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(5):
        try:
            return _checked(os.open(path, flags), path)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LEASE_FILE_MODE)
        except FileExistsError:
            continue  # another process created it meanwhile: open that one
        os.fchmod(fd, LEASE_FILE_MODE)  # not reduced by the umask: the group shares it
        return fd
    return _checked(os.open(path, flags), path)


def _checked(fd: int, path: Path) -> int:
    """``fd`` if its file may be trusted as a lease file, else closed and DeviceIOError."""
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    ours = st.st_uid == os.geteuid()
    if ours and stat.S_ISREG(st.st_mode) and mode & 0o002:
        os.fchmod(fd, LEASE_FILE_MODE)  # written 0666 by an older version: close it to others
        return fd
    _, gid = lock_group()
    trusted = ours or st.st_uid == 0 or (gid is not None and st.st_gid == gid)
    if stat.S_ISREG(st.st_mode) and trusted and not mode & 0o002:
        return fd
    os.close(fd)
    raise DeviceIOError(
        f"the lease file {path} is not to be trusted ({_describe(st)}): it must be a file "
        "of this user, root or the lab's group that others cannot write. Remove it (as root) "
        "and try again"
    )


def _kernel_holder(fd: int, written: dict[str, Any] | None) -> dict[str, Any] | None:
    """The holder of the lock on ``fd`` as the kernel says (/proc/locks: its pid; /proc: its
    command line), not as the file says: anyone who can write the file could forge that.
    What the file says (``since``, ``host``) is kept only when its pid is the kernel's."""
    try:
        st = os.fstat(fd)
    except OSError:
        return written
    holders = _holders_of(st.st_dev, st.st_ino)
    if not holders:
        return written  # no /proc (or the holder just left): the file is all there is
    holder: dict[str, Any] = {**holders[0], "host": socket.gethostname(), "from": "kernel"}
    if written and written.get("pid") == holder["pid"]:
        holder["since"] = written.get("since", "?")
        holder["key"] = written.get("key")
    return holder


def _read(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 65536, 0)
        info = json.loads(data.decode("utf-8")) if data else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
