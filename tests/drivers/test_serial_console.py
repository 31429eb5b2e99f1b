"""serial: Console over pyserial, on loop:// and on a real pseudo-terminal pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labruntime.drivers import (
    Console,
    DeviceBusyError,
    DeviceClosedError,
    DeviceIOError,
    DeviceTimeoutError,
    DigitalOutput,
    OperationCancelled,
    Programmer,
    has_capability,
    open_device,
)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(master fd, slave tty path) of a real pseudo-terminal in raw mode."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    try:
        os.close(master)
    except OSError:
        pass


def test_loop_console_round_trip() -> None:
    with open_device("serial:loop://?timeout=0.5", name="loop") as dev:
        assert has_capability(dev, Console)
        assert not has_capability(dev, DigitalOutput) and not has_capability(dev, Programmer)
        assert dev.write(b"boot ok\nprompt> rest") == 20
        assert dev.readline() == b"boot ok\n"
        match = dev.expect(rb"prompt(>)", timeout=1)
        assert match.group(1) == b">"
        assert dev.read(10, timeout=0.1) == b" rest"  # fewer than asked: what came in time
        assert dev.read(1, timeout=0.05) == b""
    assert dev.closed


def test_pty_both_directions(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with open_device(f"serial:{path}?baudrate=115200") as dev:
        os.write(master, b"hello from the board\r\n")
        assert dev.readline(timeout=2) == b"hello from the board\r\n"
        dev.write(b"AT\r\n")
        assert os.read(master, 100) == b"AT\r\n"
        # bytes arriving in pieces, from another thread, while expect() waits
        feeder = threading.Timer(0.05, lambda: os.write(master, b"...Upload do"))
        feeder2 = threading.Timer(0.1, lambda: os.write(master, b"ne: 42 bytes\n"))
        feeder.start()
        feeder2.start()
        match = dev.expect(r"done: (\d+) bytes", timeout=2)
        feeder.join()
        feeder2.join()
        assert match.group(1) == b"42"
        assert dev.readline(timeout=1) == b"\n"


def test_expect_timeout_says_what_was_read(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with open_device(f"serial:{path}") as dev:
        os.write(master, b"garbage 123")
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeoutError, match=r"b'garbage 123'") as info:
            dev.expect(b"OK", timeout=0.2)
        assert 0.15 < time.monotonic() - t0 < 1.5
        assert isinstance(info.value, TimeoutError)
        assert "did not appear within 0.2 s" in str(info.value)


def test_safe_drops_pending_input_and_reports(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with open_device(f"serial:{path}") as dev:
        os.write(master, b"stale line\npartial")
        assert dev.readline(timeout=1) == b"stale line\n"
        time.sleep(0.05)
        report = dev.safe()
        assert report.ok and report.state["dropped_bytes"] >= 1
        assert dev.read(1, timeout=0.05) == b""
        assert json.loads(json.dumps(dev.describe()))["safe"]["ok"] is True


def test_second_open_of_the_same_tty_is_busy_even_through_a_symlink(
    pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, path = pty_pair
    link = tmp_path / "by-id-board"
    link.symlink_to(path)
    with open_device(f"serial:{path}"):
        with pytest.raises(DeviceBusyError, match="busy"):
            open_device(f"serial:{link}")
    with open_device(f"serial:{link}") as again:  # released on close
        assert not again.closed


def test_missing_port_is_a_clear_io_error_and_leaves_no_lease() -> None:
    for _ in range(2):  # the failed open released its lease: the second is not "busy"
        with pytest.raises(DeviceIOError, match=r"ttyNOPE.*Check the cable") as info:
            open_device("serial:/dev/ttyNOPE?baudrate=9600")
        assert isinstance(info.value, OSError)


def test_unplugged_device_is_an_io_error(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    dev = open_device(f"serial:{path}")
    try:
        os.close(master)
        with pytest.raises(DeviceIOError, match="unplugged"):
            dev.read(1, timeout=1)
        report = dev.safe()  # a console drives nothing: a vanished port is safe
        assert report.ok and report.state["open"] is False and "error" in report.state
        with pytest.raises(DeviceIOError, match="failed earlier and was closed"):
            dev.write(b"x")
        with pytest.raises(DeviceIOError, match="failed earlier and was closed"):
            dev.readline(timeout=0.1)
    finally:
        dev.close()
    assert dev.closed


def test_closed_device_refuses_use_and_close_is_idempotent() -> None:
    dev = open_device("serial:loop://")
    dev.close()
    dev.close()
    with pytest.raises(DeviceClosedError, match="is closed"):
        dev.write(b"x")
    with pytest.raises(DeviceClosedError):
        dev.readline()
    assert dev.safe().ok  # the last report, no error
    assert dev.describe()["closed"] is True


def test_write_refuses_text() -> None:
    with open_device("serial:loop://") as dev, pytest.raises(TypeError, match="encode"):
        dev.write("text")  # type: ignore[arg-type]


LOCKER = """
import sys, serial
port = serial.Serial(sys.argv[1], exclusive=True)   # like screen or minicom: flock on the tty
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_port_locked_by_another_program_is_busy_naming_that_program(
    pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, path = pty_pair
    script = tmp_path / "locker_marker.py"
    script.write_text(LOCKER)
    locker = subprocess.Popen(
        [sys.executable, str(script), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        with pytest.raises(DeviceBusyError) as info:
            open_device(f"serial:{path}")
        message = str(info.value)
        assert f"held by pid {locker.pid} ({sys.executable} {script} {path})" in message
        assert info.value.holder is not None and info.value.holder["pid"] == locker.pid
    finally:
        locker.kill()
        locker.communicate(timeout=10)
    with open_device(f"serial:{path}") as dev:  # free again once that program is gone
        assert not dev.closed


def test_a_network_port_through_pyserial_socket_url() -> None:
    """serial:socket://host:port (pyserial's raw TCP handler), leased under its URL."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"echo:" + conn.recv(100))
            conn.recv(100)  # until the client closes

    thread = threading.Thread(target=echo_once)
    thread.start()
    try:
        with open_device(f"serial:{url}?timeout=2") as dev:
            assert has_capability(dev, Console)
            dev.write(b"hello\n")
            assert dev.readline(timeout=5) == b"echo:hello\n"
            assert dev.describe()["port"] == url
            with pytest.raises(DeviceBusyError, match="held by this process"):
                open_device(f"serial:{url}")
    finally:
        thread.join(10)
        server.close()


@pytest.mark.parametrize("where", ["pty", "loop"])
def test_safe_cancels_a_blocked_expect_and_waits_for_it(
    where: str, pty_pair: tuple[int, str]
) -> None:
    """A task waiting in expect() is woken by safe() (session end), not left reading for 30 s."""
    url = f"serial:{pty_pair[1]}" if where == "pty" else "serial:loop://"
    with open_device(url) as dev:
        outcome: list[BaseException] = []

        def reader() -> None:
            try:
                dev.expect(b"READY", timeout=30)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        deadline = time.monotonic() + 5
        while not dev.ops.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [op.name for op in dev.ops.in_flight] == ["expect"]
        t0 = time.monotonic()
        report = dev.safe()
        took = time.monotonic() - t0
        thread.join(5)
        assert report.ok and "cancelled 1 operation" in report.detail
        assert took < 2.0  # woken at once, not at the 30 s timeout
        assert len(outcome) == 1 and isinstance(outcome[0], OperationCancelled)
        assert not dev.ops.busy
        if where == "pty":  # the device is usable again after safe()
            os.write(pty_pair[0], b"READY\n")
        else:
            dev.write(b"READY\n")
        assert dev.expect(b"READY", timeout=2).group() == b"READY"
