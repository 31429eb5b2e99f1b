"""command: an external tool as a Programmer, with a real subprocess acting as the tool."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from labruntime.drivers import (
    DeviceBusyError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
    ImageError,
    OperationCancelled,
    Programmer,
    ProgrammingError,
    Progress,
    has_capability,
    load_image,
    open_device,
    validate_device_url,
)

FAKE = Path(__file__).with_name("fake_tool.py")


def tool_url(mode: str, extra: str = "", **options: str) -> str:
    query = "".join(f"&{k}={v}" for k, v in options.items())
    return f"command:{sys.executable}?args={FAKE} {mode} {{image}} {extra}{query}"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "blink.bin"
    path.write_bytes(bytes(range(200)))
    return path


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as dead; reap it if it became our child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def dead(pid: int, timeout: float = 3.0) -> bool:
    """True once ``pid`` is gone (SIGKILL is delivered asynchronously: allow a moment)."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_for_pids(path: Path, timeout: float = 10) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            tool, grandchild = path.read_text().split()
            return int(tool), int(grandchild)
        time.sleep(0.01)
    raise AssertionError("the fake tool never wrote its pids")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("avrdude-pipe", [("write", 2), ("write", 100), ("verify", 2), ("verify", 100)]),
        ("avrdude-tty", [("write", 0), ("write", 20), ("write", 40), ("write", 100)]),
        ("esptool", [("write", 0), ("write", 25), ("write", 75), ("write", 100)]),
    ],
)
def test_progress_is_parsed_from_the_tools_output(
    mode: str, expected: list[tuple[str, int]], image: Path
) -> None:
    events: list[Progress] = []
    with open_device(tool_url(mode)) as prog:
        assert has_capability(prog, Programmer)
        result = prog.program(image, progress=events.append)
    assert result.bytes == 200 and result.verified is True and result.seconds > 0
    seen = [(e.stage, e.done) for e in events]
    assert seen[0] == ("start", 0)
    for step in expected:
        assert step in seen
    dones = [e.done for e in events if e.stage == "write"]
    assert dones == sorted(dones)  # no spurious values going backwards
    assert result.to_dict() == {"bytes": 200, "verified": True, "seconds": result.seconds}


def test_failure_quotes_the_last_lines_and_no_verify_args(image: Path) -> None:
    with open_device(tool_url("fail", no_verify="-V")) as prog:
        with pytest.raises(ProgrammingError) as info:
            prog.program(image, verify=False)
    message = str(info.value)
    assert "exit code 1" in message
    assert "programmer is not responding" in message and "not in sync" in message
    assert "extra=['-V']" in message


def test_cancel_kills_the_whole_process_group(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_TOOL_PIDS", str(pids))
    stop = threading.Event()
    outcome: list[BaseException] = []
    events: list[Progress] = []
    with open_device(tool_url("hang", grace="2")) as prog:

        def run() -> None:
            try:
                prog.program(image, cancel=stop, progress=events.append)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        tool, grandchild = wait_for_pids(pids)
        assert alive(tool) and alive(grandchild)
        t0 = time.monotonic()
        stop.set()
        thread.join(10)
        assert time.monotonic() - t0 < 1.5  # SIGTERM was enough: no grace period needed
    assert len(outcome) == 1 and isinstance(outcome[0], OperationCancelled)
    assert ("write", 10) in [(e.stage, e.done) for e in events]
    assert dead(tool) and dead(grandchild)


def test_a_tool_ignoring_sigterm_is_killed_after_the_grace_period(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_TOOL_PIDS", str(pids))
    with open_device(tool_url("hang", "ignore-term", grace="0.3")) as prog:
        result: list[BaseException] = []
        thread = threading.Thread(target=lambda: _capture(prog, image, result))
        thread.start()
        tool, grandchild = wait_for_pids(pids)
        t0 = time.monotonic()
        report = prog.safe()  # cancels the operation and waits for it
        elapsed = time.monotonic() - t0
        thread.join(10)
    assert report.ok and "cancelled 1 operation" in report.detail
    assert 0.25 <= elapsed < 3
    assert isinstance(result[0], OperationCancelled)
    assert dead(tool) and dead(grandchild)


def _capture(prog, image: Path, sink: list[BaseException]) -> None:  # noqa: ANN001
    try:
        prog.program(image)
    except BaseException as exc:
        sink.append(exc)


def test_deadline_stops_the_tool_with_its_last_lines(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TOOL_PIDS", str(tmp_path / "pids"))
    with open_device(tool_url("hang", grace="1")) as prog:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeoutError, match=r"(?s)deadline of 0.5 s.*10%") as info:
            prog.program(image, timeout=0.5)
        assert 0.45 < time.monotonic() - t0 < 3
    assert isinstance(info.value, TimeoutError)
    tool, grandchild = wait_for_pids(tmp_path / "pids")
    assert dead(tool) and dead(grandchild)


def test_bytes_image_goes_through_a_temporary_hex_file(tmp_path: Path) -> None:
    with open_device(tool_url("esptool")) as prog:
        before = set(Path("/tmp").glob("labruntime-*.hex"))
        result = prog.program(load_image(b"\x0c\x94" * 50, raw=True))
        assert result.bytes == 100
        assert set(Path("/tmp").glob("labruntime-*.hex")) == before
        assert prog.estimate_seconds(load_image(b"\x00" * 1000, raw=True)) == pytest.approx(1.76)
        assert prog.estimate_seconds(
            load_image(b"\x00" * 1000, raw=True), verify=False
        ) == pytest.approx(1.66)
        # issue 13: avrdude -c arduino at 115200 wrote and verified 28 KB in 8.7 s on an Uno
        assert 8.7 <= prog.estimate_seconds(load_image(b"\x00" * 28 * 1024, raw=True)) < 10
    with open_device(tool_url("esptool", estimate="7.5")) as prog:
        assert prog.estimate_seconds(load_image(b"\x00", raw=True)) == 7.5
        assert (
            prog.estimate_seconds(load_image(b"\x00", raw=True), verify=False) == 7.5
        )  # a fixed estimate is kept


def test_a_bad_hex_file_is_refused_before_the_tool_runs(tmp_path: Path) -> None:
    bad = tmp_path / "broken.hex"
    bad.write_text(":100000000C945C000C946E000C946E000C946E00CA\n:10001000XX\n")
    marker = tmp_path / "ran"
    with open_device(f"command:touch?args={marker} {{image}}") as prog:
        with pytest.raises(ImageError, match="broken.hex"):
            prog.program(bad)
    assert not marker.exists()


def test_missing_tool_is_a_clear_io_error_at_open(tmp_path: Path) -> None:
    for tool, where in [
        ("no-such-programmer-tool", "is not on PATH"),
        (str(tmp_path / "bin" / "avrdude"), "is not an executable file"),
    ]:
        url = f"command:{tool}?args=-f {{image}}"
        with pytest.raises(DeviceIOError, match=f"{where}; install it") as info:
            open_device(url)
        assert tool in str(info.value)
        assert validate_device_url(url).target == tool  # config checks do not look for it


def test_port_option_leases_the_tty_like_serial_does(tmp_path: Path) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        with open_device(f"command:avrdude?port={path}&args=-P {{port}} -U flash:w:{{image}}:i"):
            with pytest.raises(DeviceBusyError):
                open_device(f"serial:{path}")
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("command:avrdude", "must contain {image}"),
        ("command:avrdude?args=-U flash:w:x.hex", "must contain {image}"),
        ("command:avrdude?args=-P {port} {image}", "no port= option"),
        ("command:avrdude?args='{image}", "not a valid shell-like"),
        ("command:avrdude?args={image}&timeout=-1", "below"),
        ("command:avrdude?args={image}&retries=3", "unknown option 'retries'"),
    ],
)
def test_bad_command_urls(url: str, message: str) -> None:
    with pytest.raises(DeviceURLError, match=message) as info:
        open_device(url)
    assert "command:TOOL?args=" in str(info.value)
