"""The demo lab shipped with labruntime: ``labruntime demo`` serves it.

A lab written exactly like a lab author would, as a student meets it: the time left, a firmware
section (upload a .hex or pick a bundled example, Program with a progress bar, Cancel), an LED
switched through small device tasks and read back, and a logout button. Its devices are
simulated (:data:`DEMO_DEVICES`): a simulated Arduino and a simulated GPIO board. Modules:
:mod:`.app` (create_app), :mod:`.lab_tasks`, :mod:`.views`, :mod:`.firmware`.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labruntime.errors import InvalidConfigError
from labruntime.store.embedded import EmbeddedRedis, embedded_redis_directory, systemd_unit

from .app import DEFAULT_INSTANCE, DEMO_DEVICES, create_app, create_lab

__all__ = ["create_app", "run_demo", "DEFAULT_INSTANCE", "DEMO_DEVICES"]

log = logging.getLogger(__name__)


def run_demo(
    host: str = "127.0.0.1",
    port: int = 5000,
    instance_path: str | None = None,
    *,
    open_browser: bool = True,
    echo: Callable[[str], Any] = log.info,
) -> None:
    """Serve the demo, create a fake student and print the link to open."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidConfigError(f"port {port!r} is not a TCP port: give --port 1-65535")
    check_port_free(host, port)  # before touching anything (the store, the devices)
    folder = Path(instance_path or DEFAULT_INSTANCE).resolve()
    server = EmbeddedRedis(embedded_redis_directory(folder))
    ours = not server.running  # we start it, and stop it at the end
    if ours:  # the demo owns it: under systemd in the demo's own unit, else under its guard
        server.ensure_running(implicit=systemd_unit() is None)
    app, weblab = create_lab(instance_path)
    base = f"http://{link_host(host)}:{port}"
    with app.test_client() as client:
        from labruntime.testing import FakeRLMS

        server_data = FakeRLMS.server_initial_data(
            username="student", full_name="Demo Student", assigned_time=600, style="labsland"
        )
        reply = client.post(
            "/weblab/sessions/",
            json={
                "client_initial_data": {},
                "server_initial_data": server_data,
                "back": f"{base}/rlms/",  # the demo's "laboratory list": a new session
            },
            auth=(app.config["WEBLAB_USERNAME"], app.config["WEBLAB_PASSWORD"]),
            base_url=base,
        )
    url = reply.get_json()["url"]
    echo(f"labruntime demo: data in {app.instance_path}")
    echo(f"open this link as the student (10 minutes): {url}")
    if host in WILDCARDS:
        local = urllib.parse.urlsplit(url)._replace(netloc=f"localhost:{port}").geturl()
        echo(f"(served on every address of this machine; on this machine: {local})")
    if open_browser:
        webbrowser.open(url)
    _stop_on_sigterm()
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        weblab.shutdown(app, timeout=5)  # devices safe, our connections closed
        echo(f"labruntime demo: stopped{_stop_redis(app, ours)}")


def _stop_redis(app: Any, ours: bool) -> str:
    """Stop the embedded Redis this demo started, unless another process uses it."""
    if app.config.get("WEBLAB_REDIS_URL"):
        return ""
    server = EmbeddedRedis(embedded_redis_directory(app.instance_path))
    if not ours:
        return f" (its Redis, pid {server.pid}, was running before: left running)"
    clients = server.clients()
    if clients:
        return (
            f" (its Redis, pid {server.pid}, left running: {clients} connection(s) of other "
            "processes use it; `labruntime redis stop` with this lab stops it)"
        )
    server.stop()  # the demo leaves no server behind
    return " (its Redis too; its data stays for next time)"


WILDCARDS = ("0.0.0.0", "::", "")


def link_host(host: str) -> str:
    """The host of a link that works: this machine's address when serving on every address
    (a headless Pi: the link is opened on another machine), else the host given."""
    if host in ("127.0.0.1", "::1", "localhost"):
        return "localhost"
    if host not in WILDCARDS:
        return f"[{host}]" if ":" in host else host
    try:  # the address of the interface that routes outwards (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        if not address.startswith("127."):
            return address
    except OSError:
        pass
    return socket.gethostname()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port already in use, naming the process listening on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
            return
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise InvalidConfigError(f"cannot serve on {host}:{port}: {error}") from None
    pid, command = listener_of(port)
    if pid is not None and "demo" in command.split():
        raise InvalidConfigError(
            f"a demo is already running on :{port} (pid {pid}): use its link, or stop it "
            f"(Ctrl-C where it runs, or kill {pid}); or serve this one on another --port"
        )
    who = f" by pid {pid} ({command})" if pid is not None else ""
    raise InvalidConfigError(f"port {port} is already in use{who}: choose another with --port")


def listener_of(port: int) -> tuple[int | None, str]:
    """(pid, command line) of the process listening on TCP ``port`` (Linux /proc), or
    (None, "") when it cannot be told (not Linux, another user's process)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None, ""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) in inodes:
                    pid = int(fd_dir.parent.name)
                    argv = (fd_dir.parent / "cmdline").read_bytes().split(b"\0")
                    return pid, " ".join(a.decode(errors="replace") for a in argv if a)
        except OSError:
            continue
    return None, ""


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, ``kill``) ends the demo like Ctrl-C: devices safe, Redis stopped."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
