"""``command:``: a Programmer that runs an external tool (avrdude, esptool, openocd...).

``command:TOOL?args=ARGS&port=PORT&timeout=120&grace=3&no_verify=ARGS&estimate=SECONDS``

* ``TOOL``: the executable, found on ``PATH`` or given as a path; opening fails with
  DeviceIOError if it is not there (``validate`` does not look, so a configuration can name
  a tool that only the machine holding the hardware has).
* ``args`` (required): the tool's arguments as a shell-like string (``shlex``: quote with
  ``'...'``; percent-encode ``&`` as ``%26``). Placeholders: ``{image}`` (required) becomes the
  firmware file's path, ``{port}`` the ``port`` option. Example::

      command:avrdude?port=/dev/ttyACM0&no_verify=-V&args=-c arduino -p m328p -P {port}
              -b 115200 -D -U flash:w:{image}:i

* ``port``: the device node the tool talks to; the lease is taken on its real path (the same
  key ``serial:``/``stk500:`` use), so the tool and a console never fight over a port. Without
  it the lease key is the URL.
* ``timeout``: default deadline of one ``program()`` in seconds (default 120).
* ``grace``: seconds between SIGTERM and SIGKILL when cancelling (default 3).
* ``no_verify``: arguments appended when ``program(..., verify=False)`` (avrdude: ``-V``).
  The tool is trusted to verify otherwise (avrdude does by default): ``verified`` in the result
  is ``verify and exit code 0``.
* ``estimate``: seconds ``estimate_seconds()`` returns (with or without verify). The default
  is calibrated for avrdude ``-c arduino`` at 115200 baud on an Uno (8.7 s for a 28 KB image,
  written and verified): 1.5 s (avrdude's start, its DTR reset, the bootloader's start-up) +
  0.26 ms per byte, 0.16 ms per byte with ``verify=False`` (the read-back is about 40 % of the
  time; the page writes stay). Give ``estimate`` for another tool or a slower rate.

The tool runs in its own session and process group; cancel sends SIGTERM to the group and
SIGKILL after ``grace``; on exit anything left in the group is killed. Progress is parsed from
its output (:mod:`.tool_output`). On failure the error quotes the tool's last lines.
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import (
    DeviceBusyError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
    ProgrammingError,
)
from .image import FirmwareImage
from .lease import DeviceLease, path_key
from .operations import Operation
from .programming import ImageProgrammer
from .serial_ports import other_openers
from .tool_output import ToolOutput
from .urls import DeviceURL, opt_float, opt_str, reject_unknown

__all__ = ["CommandProgrammer", "open_url", "validate"]

log = logging.getLogger(__name__)

GRAMMAR = (
    "command:TOOL?args=ARGS WITH {image} [AND {port}]&port=/dev/ttyACM0&timeout=120&grace=3"
    "&no_verify=ARGS&estimate=SECONDS"
)
_OPTIONS = {"args", "port", "timeout", "grace", "no_verify", "estimate"}
#: the default estimate (avrdude -c arduino at 115200: 8.7 s for 28 KB written and verified)
_TOOL_START = 1.5
_PER_BYTE = 0.00026
_PER_BYTE_NO_VERIFY = 0.00016


def _split(url: DeviceURL, key: str) -> list[str]:
    try:
        return shlex.split(url.options.get(key, ""))
    except ValueError as exc:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: option {key} is not a valid shell-like argument "
            f"string ({exc}). Grammar: {GRAMMAR}"
        ) from None


def validate(url: DeviceURL) -> None:
    reject_unknown(url, _OPTIONS, GRAMMAR)
    args = _split(url, "args")
    if not any("{image}" in a for a in args):
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: option args must contain {{image}} where the "
            f"firmware file goes. Grammar: {GRAMMAR}"
        )
    if any("{port}" in a for a in args) and "port" not in url.options:
        raise DeviceURLError(
            f"bad device URL {str(url)!r}: args use {{port}} but no port= option is given. "
            f"Grammar: {GRAMMAR}"
        )
    _split(url, "no_verify")
    opt_str(url, "port", None, grammar=GRAMMAR)
    opt_float(url, "timeout", 120.0, minimum=0.001, grammar=GRAMMAR)
    opt_float(url, "grace", 3.0, minimum=0.0, grammar=GRAMMAR)
    opt_float(url, "estimate", None, minimum=0.0, grammar=GRAMMAR)


class CommandProgrammer(ImageProgrammer):
    """Programs a device by running an external tool; a Programmer."""

    scheme = "command"

    def __init__(self, url: DeviceURL, *, name: str | None, lease: DeviceLease | None) -> None:
        super().__init__(url, name=name, lease=lease)
        self.tool = url.target
        self.port = url.options.get("port")
        self.args = _split(url, "args")
        self.no_verify = _split(url, "no_verify")
        self.timeout = float(opt_float(url, "timeout", 120.0))
        self.default_timeout = self.timeout
        self.grace = float(opt_float(url, "grace", 3.0))
        self.estimate = opt_float(url, "estimate", None)
        self._procs: set[subprocess.Popen[bytes]] = set()

    # -- Programmer (program() and estimate_seconds() come from ImageProgrammer) ------------
    def _estimate(self, img: FirmwareImage, verify: bool) -> float:
        if self.estimate is not None:
            return self.estimate
        return _TOOL_START + img.size * (_PER_BYTE if verify else _PER_BYTE_NO_VERIFY)

    def check(self) -> dict[str, Any]:
        """What can be known without running the tool on the board (``device check``): the
        tool is installed, the port exists and no other program has it open."""
        self._check_open()
        found = shutil.which(self.tool)
        if found is None:
            raise DeviceIOError(f"{self.label}: the tool {self.tool!r} is not installed (PATH)")
        if self.port and "://" not in self.port and not os.path.exists(self.port):
            raise DeviceIOError(
                f"{self.label}: the port {self.port} does not exist: check the cable and the "
                "port name (ls /dev/serial/by-id/)"
            )
        self._port_free()
        return {"tool": found, "port": self.port or "-"}

    def _port_free(self) -> None:
        """Refuse to run the tool on a port another program has open (it would fail, or
        crash that program), naming it."""
        if not self.port or "://" in self.port:
            return
        users = other_openers(self.port)
        if users:
            who = "; ".join(f"pid {u['pid']} ({' '.join(u['argv'])[:200]})" for u in users)
            raise DeviceBusyError(
                f"{self.label}: the port {self.port} is busy: held by {who}, which has it "
                "open. Stop that program first",
                holder=users[0],
            )

    def _write(self, op: Operation, source: Any, img: FirmwareImage, verify: bool) -> None:
        """Run the tool on the image: its own file if ``source`` is a HEX Path, else a temp HEX."""
        self._port_free()
        started = time.monotonic()
        with _ImageFile(source, img) as path:
            argv = [self.tool, *(self._expand(a, path) for a in self.args)]
            if not verify:
                argv += self.no_verify
            op.check()
            op.report("start", 0, 100)
            code, tail = self._run(argv, op)
        if code != 0:
            last = "\n  ".join(tail) or "(no output)"
            raise ProgrammingError(
                f"{self.tool} failed with exit code {code} after "
                f"{time.monotonic() - started:.1f} s; its last lines:\n  {last}"
            )

    def _expand(self, arg: str, image_path: str) -> str:
        return arg.replace("{image}", image_path).replace("{port}", self.port or "")

    def _run(self, argv: list[str], op: Operation) -> tuple[int, list[str]]:
        log.info("%s: running %s", self.label, shlex.join(argv))
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            hint = "install it or give its full path" if shutil.which(argv[0]) is None else ""
            raise DeviceIOError(f"cannot run {argv[0]!r}: {exc.strerror}; {hint}") from exc
        self._procs.add(proc)
        output = ToolOutput()
        term_at: list[float] = []
        op.on_cancel(lambda _reason: self._signal(proc, signal.SIGTERM, term_at))
        try:
            self._pump(proc, op, output, term_at)
        finally:
            self._reap(proc)
            output.finish()
        if op.expired():
            raise DeviceTimeoutError(
                f"{self.tool} ran past the deadline of {op.timeout:g} s and was stopped; "
                f"its last lines:\n  " + "\n  ".join(output.tail)
            )
        op.check()  # cancelled: OperationCancelled
        return proc.returncode, output.tail

    def _pump(
        self, proc: subprocess.Popen[bytes], op: Operation, output: ToolOutput, term_at: list
    ) -> None:
        """Read the tool's output until it exits, handling cancel, deadline and escalation."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            eof = False
            while not eof or proc.poll() is None:
                if not term_at and (op.cancelled or op.expired()):
                    self._signal(proc, signal.SIGTERM, term_at)
                if term_at and time.monotonic() - term_at[0] >= self.grace:
                    self._signal(proc, signal.SIGKILL, term_at)
                if eof:  # output closed but the tool lives on: wait for it without spinning
                    try:
                        proc.wait(timeout=0.1)
                    except subprocess.TimeoutExpired:
                        pass
                    continue
                if not sel.select(timeout=0.1):
                    if proc.poll() is not None:
                        eof = True  # a grandchild may hold the pipe open: stop reading
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    eof = True
                    continue
                for event in output.feed(chunk.decode("utf-8", "replace")):
                    op.report(event.stage, event.done, event.total)

    def _signal(
        self, proc: subprocess.Popen[bytes], sig: signal.Signals, term_at: list[float]
    ) -> None:
        if sig == signal.SIGTERM:
            if term_at:
                return
            term_at.append(time.monotonic())
        try:
            os.killpg(proc.pid, sig)
            log.info("%s: sent %s to the process group of %s", self.label, sig.name, self.tool)
        except ProcessLookupError:
            pass

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for the tool, then kill anything it left in its process group."""
        try:
            proc.wait(timeout=self.grace + 5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        else:
            log.debug("%s: killed leftovers of %s's process group", self.label, self.tool)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._procs.discard(proc)

    # -- Device hooks -----------------------------------------------------------------------
    def _drive_safe(self) -> dict[str, Any]:
        """No tool may still run: kill any survivor's process group."""
        for proc in list(self._procs):
            self._reap(proc)
        return {"tool": self.tool, "running": 0}

    def _close(self) -> None:
        for proc in list(self._procs):
            self._reap(proc)

    def _describe(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "tool_path": shutil.which(self.tool),
            "port": self.port,
            "timeout": self.timeout,
        }


class _ImageFile:
    """Context manager: a file path holding the image, writing a temp HEX file if needed."""

    def __init__(self, source: Any, img: FirmwareImage) -> None:
        self.source = source
        self.img = img
        self._tmp: str | None = None

    def __enter__(self) -> str:
        # a Path to a HEX file is given to the tool as it is; anything else (HEX text from a
        # student, bytes, a raw .bin) is written out as a temporary HEX file
        if isinstance(self.source, os.PathLike) and Path(self.source).suffix.lower() in (
            ".hex",
            ".ihex",
            ".ihx",
        ):
            return os.fspath(self.source)
        fd, self._tmp = tempfile.mkstemp(prefix="labruntime-", suffix=".hex")
        with os.fdopen(fd, "w") as fh:
            fh.write(self.img.to_ihex())
        return self._tmp

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            os.unlink(self._tmp)


def open_url(url: DeviceURL, *, name: str | None = None) -> CommandProgrammer:
    validate(url)
    if shutil.which(url.target) is None:
        where = "is not an executable file" if os.sep in url.target else "is not on PATH"
        raise DeviceIOError(
            f"cannot use {str(url)!r}: the tool {url.target!r} {where}; install it (avrdude: "
            "apt-get install avrdude) or give its full path"
        )
    port = url.options.get("port")
    lease = DeviceLease.acquire(path_key(port) if port else str(url))
    try:
        device = CommandProgrammer(url, name=name, lease=lease)
    except BaseException:
        lease.release()
        raise
    device.safe()
    return device
