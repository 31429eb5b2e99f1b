"""The demo and the embedded Redis are good neighbours: a second demo is refused before it
touches anything, a Redis another process uses is never stopped, status commands never start
it, a start says so in one line, an implicit server never outlives its folder, and a folder or
socket of another user is refused."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from labruntime.demo import link_host
from labruntime.store import embedded
from labruntime.store.embedded import EmbeddedRedis, EmbeddedRedisError, ensure_embedded_redis
from tests._helpers import (
    LABRUNTIME,
    run_labruntime,
    skip_unless_user_can_import,
    wait_for,
    write_lab,
)
from tests._processes import stop_processes


def _open(link: str) -> int:
    """GET ``link`` as a browser would (cookies kept across the redirect); the status."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(link, timeout=30) as page:
        return page.status


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    def __init__(self, tmp_path: Path, port: int, instance: Path, *extra: str) -> None:
        self.log = tmp_path / f"demo-{len(list(tmp_path.glob('demo-*')))}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [LABRUNTIME, "demo", "--port", str(port), "--instance", str(instance),
                 "--dont-open-browser", *extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def link(self) -> str:
        found = wait_for(
            lambda: re.search(r"(http://\S+/callback/\S+)", self.output()), 60, self.output
        )
        return found.group(1)


@pytest.mark.slow
def test_a_second_demo_is_refused_and_leaves_the_first_alone(tmp_path: Path):
    port, instance = _free_port(), tmp_path / "d"
    first = Demo(tmp_path, port, instance)
    second = None
    try:
        link = first.link()
        wait_for(lambda: "Running on" in first.output(), 30, first.output)
        server = EmbeddedRedis(instance / "redis")
        pid = server.pid
        assert pid is not None
        second = Demo(tmp_path, port, instance)
        assert second.proc.wait(timeout=60) == 1
        said = second.output()
        assert f"a demo is already running on :{port} (pid {first.proc.pid})" in said, said
        assert "callback" not in said and "Traceback" not in said  # no link, nothing touched
        assert server.pid == pid and server.running  # the first demo's Redis goes on
        assert _open(link.replace("localhost", "127.0.0.1")) == 200
        assert "Traceback" not in first.output()
    finally:
        stop_processes([p.proc for p in (first, second) if p is not None], signal.SIGINT)
    assert not EmbeddedRedis(instance / "redis").running  # the first one stopped its own


@pytest.mark.slow
def test_the_demo_leaves_a_redis_running_before_it_alone(tmp_path: Path):
    instance = tmp_path / "d"
    server = EmbeddedRedis(instance / "redis")
    server.ensure_running()
    try:
        demo = Demo(tmp_path, _free_port(), instance)
        demo.link()
        stop_processes([demo.proc], signal.SIGINT)
        assert "was running before: left running" in demo.output(), demo.output()
        assert server.running
    finally:
        server.stop()


def test_a_demo_on_every_address_prints_a_link_for_other_machines():
    host = link_host("0.0.0.0")
    assert host not in ("localhost", "0.0.0.0") and not host.startswith("127.")
    assert link_host("127.0.0.1") == "localhost" and link_host("10.1.2.3") == "10.1.2.3"


@pytest.mark.slow
def test_demo_host_0000_link_works_at_this_machines_address(tmp_path: Path):
    demo = Demo(tmp_path, _free_port(), tmp_path / "d", "--host", "0.0.0.0")
    try:
        link = demo.link()
        assert "localhost" not in link.split("/callback/")[0], link
        wait_for(lambda: "Running on" in demo.output(), 30, demo.output)
        assert _open(link) == 200  # as another machine would open it
    finally:
        stop_processes([demo.proc], signal.SIGINT)


def _lab(tmp_path: Path) -> Path:
    return write_lab(tmp_path / "neighbourlab.py", 'WEBLAB_DEVICES={"led": "gpio:17?factory=mock"}')


@pytest.mark.slow
def test_status_commands_never_start_the_embedded_redis(tmp_path: Path):
    lab = _lab(tmp_path)
    server = EmbeddedRedis(tmp_path / "inst" / "redis")
    for command in (["device", "status"], ["fake", "status"], ["redis", "status"]):
        result = run_labruntime(lab, *command)
        assert "not running" in result.stdout, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert not server.running, command
    started = run_labruntime(lab, "fake", "new", "--dont-open-browser")
    try:
        assert started.returncode == 0, started.stderr
        lines = [line for line in started.stderr.splitlines() if "embedded Redis" in line]
        assert len(lines) == 1, started.stderr  # one line: where, pid, how to stop
        assert f"pid {server.pid}" in lines[0] and str(server.socket_path) in lines[0]
        assert "redis stop" in lines[0]
    finally:
        server.stop()


@pytest.mark.slow
def test_an_implicit_server_ends_when_its_folder_is_deleted(tmp_path: Path):
    instance = tmp_path / "inst"
    ensure_embedded_redis(instance)
    server = EmbeddedRedis(instance / "redis")
    pid = server.pid
    assert pid is not None
    shutil.rmtree(instance)  # nobody can reach its socket to stop it any more
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, "the orphan Redis to end")


@pytest.mark.parametrize(
    ("cgroup", "unit"),
    [
        ("0::/system.slice/labruntime-web.service\n", "labruntime-web.service"),
        ("1:name=systemd:/system.slice/lab1.service\n0::/\n", "lab1.service"),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),  # a login shell
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope", None),
        ("4:memory:/process_api/04aad58e\n0::/\n", None),  # a container, no systemd
    ],
)
def test_the_systemd_unit_is_read_from_the_cgroup(cgroup, unit):
    assert embedded.systemd_unit(cgroup) == unit


def test_under_systemd_an_implicit_start_is_refused_naming_the_unit(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "systemd_unit", lambda cgroup=None: "labruntime-web.service")
    with pytest.raises(EmbeddedRedisError, match="labruntime-web.service.*systemctl start"):
        ensure_embedded_redis(tmp_path / "inst")
    assert not EmbeddedRedis(tmp_path / "inst" / "redis").running


def test_a_folder_others_can_write_is_refused(tmp_path: Path):
    folder = tmp_path / "inst" / "redis"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    with pytest.raises(EmbeddedRedisError, match="can be written by other users"):
        ensure_embedded_redis(tmp_path / "inst")


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="a second user needs root and setpriv (run the suite as root to include it)",
)


@needs_root
@pytest.mark.slow
def test_a_server_another_user_started_in_the_folder_is_refused(tmp_path: Path):
    skip_unless_user_can_import(65534, 65534, "labruntime.store.embedded")
    shared = Path(tempfile.mkdtemp(prefix="lr-second-user-"))  # pytest's folders are 0700
    shared.chmod(0o755)
    instance = shared / "inst"
    instance.mkdir()
    os.chown(instance, 65534, 65534)
    other = subprocess.run(  # user nobody starts "the lab's" Redis in the instance folder
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "import sys; from labruntime.store.embedded import EmbeddedRedis as E; "
         "print(E(sys.argv[1]).ensure_running())", str(instance / "redis")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    server = EmbeddedRedis(instance / "redis")
    try:
        assert other.returncode == 0, other.stderr
        assert server.running
        with pytest.raises(EmbeddedRedisError, match=r"belongs to nobody \(uid 65534\)"):
            ensure_embedded_redis(instance)  # the lab's user (root here) refuses it
    finally:
        subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", "import sys; from labruntime.store.embedded import EmbeddedRedis as E; "
             "E(sys.argv[1]).stop()", str(instance / "redis")],
            timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(shared, ignore_errors=True)
