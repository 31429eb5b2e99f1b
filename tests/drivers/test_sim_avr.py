"""The sim:avr twin: simavr runs Optiboot and the uploaded program, in real time (real processes).

The firmware is built from tests/firmware/*.c by tests/firmware/Makefile (avr-gcc); the built
.hex files are committed. Tests that run the twin skip, saying what to install, where simavr,
gcc or avr-gcc is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from labruntime.drivers.capabilities import Console, DigitalInput, Programmer
from labruntime.drivers.errors import (
    DeviceClosedError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
)
from labruntime.drivers.registry import open_device, validate_device_url
from labruntime.drivers.sim import avr_build
from labruntime.drivers.sim.avr import SimAvrBoard, twin_available
from labruntime.drivers.sim.avr_pins import parse_pin
from labruntime.drivers.sim.avr_twin import AvrTwin

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
BLINK = FIRMWARE / "blink.hex"  # PB5 (Arduino pin 13) toggles every 100 ms
HELLO = FIRMWARE / "hello_uart.hex"  # "hello from the twin N" every 50 ms; echoes upper-cased
AVRDUDE = shutil.which("avrdude")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private build cache; skips the module's twin tests (saying why) if it cannot build."""
    path = tmp_path_factory.mktemp("twin-cache")
    ok, why = twin_available(cache_dir=path)
    if not ok:
        pytest.skip(f"the AVR twin cannot run here: {why}")
    return path


@pytest.fixture
def board(cache: Path) -> Iterator[SimAvrBoard]:
    device = open_device("sim:avr?mcu=atmega328p", name="twin", cache_dir=cache)
    assert isinstance(device, SimAvrBoard)
    try:
        yield device
    finally:
        device.close()


def test_blink_programmed_through_stk500_toggles_the_led_with_its_period(
    board: SimAvrBoard,
) -> None:
    assert isinstance(board, Programmer) and isinstance(board, Console)
    result = board.program(BLINK)  # the native stk500 driver, talking to the real Optiboot
    assert result.verified and result.bytes == 162
    led = board.pin(13)
    assert isinstance(led, DigitalInput) and led.pin_name == "PB5"
    start = board.sim_seconds
    assert led.wait_for(True, timeout=2) and led.wait_for(False, timeout=2)
    assert led.mode == "out"
    board.twin.wait_sim_time(start + 1.0, timeout=5)
    edges = [e for e in led.edges() if e.seconds >= start]
    periods = [b.seconds - a.seconds for a, b in zip(edges, edges[1:], strict=False)]
    assert len(periods) >= 8
    # _delay_ms(100) plus the loop's few cycles: 100 ms of simulated time, to the microsecond
    assert all(abs(p - 0.100) < 2e-6 for p in periods), periods
    assert [e.level for e in edges[:4]] in ([True, False, True, False], [False, True, False, True])


def test_program_output_reaches_the_console_and_input_reaches_the_program(
    board: SimAvrBoard,
) -> None:
    board.program(HELLO)
    first = board.readline(timeout=2)
    assert first.startswith(b"hello from the twin ") and first.endswith(b"\r\n")
    number = int(first.split()[-1])
    assert board.readline(timeout=2) == f"hello from the twin {number + 1}\r\n".encode()
    board.write(b"abc xyz\n")
    assert board.expect(rb"(?m)^ABC XYZ\n", timeout=2)  # a whole line, never split
    with pytest.raises(DeviceTimeoutError, match="did not appear"):
        board.expect(b"never printed", timeout=0.3)


def test_the_twin_keeps_real_time(board: SimAvrBoard) -> None:
    board.program(BLINK)
    sim0, wall0 = board.sim_seconds, time.monotonic()
    time.sleep(1.0)
    board.twin.wait_until(lambda: board.twin.sim_seconds > sim0 + 0.9, timeout=2)
    sim, wall = board.sim_seconds - sim0, time.monotonic() - wall0
    # never ahead of the wall clock (timeouts hold); behind only when the host is overloaded
    assert sim <= wall + 0.06
    assert sim >= 0.5 * wall
    info = board.describe()["twin"]
    assert info["mcu"] == "atmega328p" and info["f_cpu"] == 16_000_000


def test_avrdude_programs_the_twin_through_its_serial_port(board: SimAvrBoard) -> None:
    if AVRDUDE is None:
        pytest.skip("avrdude is not installed (apt-get install avrdude)")
    done = subprocess.run(
        [AVRDUDE, "-c", "arduino", "-p", "m328p", "-P", board.tty_path, "-b", "115200"]
        + ["-U", f"flash:w:{BLINK}:i"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "162 bytes of flash verified" in done.stderr
    led = board.pin("PB5")
    assert led.wait_for(True, timeout=2) and led.wait_for(False, timeout=2)


def test_an_stk500_device_on_the_twins_port_programs_it(board: SimAvrBoard) -> None:
    with open_device(f"stk500:{board.tty_path}?reset=none") as programmer:
        assert isinstance(programmer, Programmer)
        programmer.program(BLINK)
    assert board.pin(13).wait_for(True, timeout=2)


def test_a_blank_chip_that_crashed_is_programmed_after_a_reset(board: SimAvrBoard) -> None:
    # power-on with an empty flash: Optiboot starts the "program" (0xFFFF all the way up to
    # the bootloader, which starts it again), leaking stack until the core stops
    assert board.twin.wait_until(lambda: board.twin.halted is not None, timeout=5)
    assert board.program(BLINK).verified
    assert board.pin(13).wait_for(True, timeout=2) and board.twin.halted is None


def test_a_baud_rate_the_bootloader_does_not_use_gets_no_answer(cache: Path) -> None:
    with open_device("sim:avr?baudrate=57600&sync_timeout=1", cache_dir=cache) as board:
        assert isinstance(board, SimAvrBoard)
        with pytest.raises(DeviceTimeoutError, match="no answer from the bootloader"):
            board.program(BLINK)


def test_opening_the_port_resets_the_chip_and_its_receiver_holds_three_bytes(
    cache: Path,
) -> None:
    with AvrTwin(cache_dir=cache) as twin:
        before = len(twin.resets)
        with serial.Serial(twin.tty_path, 115200, timeout=0.1) as port:
            assert twin.wait_until(lambda: len(twin.resets) > before, timeout=2)
            assert twin.resets[-1][1] == "ext"  # the DTR auto-reset of an Uno
            lost = twin.rx_lost
            time.sleep(0.2)  # past the 65 ms start-up: Optiboot flashes its LED, reads nothing
            port.write(b"0 0 0 0 0 ")
            assert twin.wait_until(lambda: twin.rx_lost >= lost + 7, timeout=2)
            assert twin.rx_lost == lost + 7  # 3 held (2-byte FIFO + shift register), 7 overrun


def test_safe_releases_a_driven_input(board: SimAvrBoard) -> None:
    button = board.pin(2)  # PD2, an input of the blank chip
    button.drive(True)
    assert (button.mode, button.value) == ("in", True)
    report = board.safe()
    assert report.ok and report.state["released_pins"] == ["PD2"]
    assert button.value is False


def test_a_dead_simulator_is_reported_not_hidden(board: SimAvrBoard) -> None:
    proc = board.twin._proc
    assert proc is not None
    proc.kill()
    proc.wait(5)
    report = board.safe()
    assert not report.ok and "simulator process is gone" in report.detail
    with pytest.raises(DeviceIOError, match="open the device again"):
        board.readline(timeout=1)


def test_close_stops_the_process_and_removes_its_folder(cache: Path) -> None:
    board = open_device("sim:avr", cache_dir=cache)
    assert isinstance(board, SimAvrBoard)
    proc = board.twin._proc
    assert proc is not None and proc.poll() is None
    folder = board.twin.run_dir
    report = board.safe()
    assert report.ok and report.state["port"] == "closed"
    board.close()
    board.close()  # idempotent
    assert proc.poll() is not None
    assert not os.path.exists(folder)
    with pytest.raises(DeviceClosedError):
        board.pin(13)
    with pytest.raises(DeviceClosedError):
        board.readline(timeout=0.1)


def test_a_folder_left_by_a_dead_process_is_removed(cache: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"labruntime-avr-{dead.pid}-stale"
    stale.mkdir(exist_ok=True)
    with AvrTwin(cache_dir=cache):
        assert not stale.exists()


def test_pins_by_port_or_arduino_number() -> None:
    assert parse_pin("PB5") == parse_pin("b5") == parse_pin(13) == parse_pin("D13") == ("B", 5)
    assert parse_pin(0) == ("D", 0) and parse_pin("A0") == ("C", 0)
    with pytest.raises(KeyError, match="not a pin"):
        parse_pin("PZ9")


def test_url_validation_needs_no_simavr() -> None:
    assert validate_device_url("sim:avr?mcu=atmega328p&f_cpu=16000000&baudrate=115200")
    with pytest.raises(DeviceURLError, match="mcu must be one of atmega168, atmega328p"):
        validate_device_url("sim:avr?mcu=atmega2560")
    with pytest.raises(DeviceURLError, match="Grammar: sim:avr"):
        validate_device_url("sim:avr?speed=fast")


def test_unavailable_twin_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(avr_build.shutil, "which", lambda _name: None)
    ok, why = twin_available(cache_dir=tmp_path / "empty-cache")
    assert not ok
    assert "apt-get install simavr libsimavr-dev gcc" in why


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[-1].startswith("Z"):
                    return True  # exited, waiting for its parent (init) to reap it
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_the_harness_outlives_the_thread_that_opened_it(cache: Path) -> None:
    opened: list[SimAvrBoard] = []
    thread = threading.Thread(
        target=lambda: opened.append(open_device("sim:avr", cache_dir=cache))  # type: ignore[arg-type]
    )
    thread.start()
    thread.join()
    board = opened[0]
    try:
        time.sleep(0.2)
        assert board.twin.running
        board.program(BLINK)
    finally:
        board.close()


def test_no_orphan_when_the_owning_process_is_killed(cache: Path) -> None:
    script = (
        "import sys, time\n"
        "from labruntime.drivers.registry import open_device\n"
        f"board = open_device('sim:avr', cache_dir={str(cache)!r})\n"
        "print(board.twin._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        harness = int(owner.stdout.readline())
        assert not _gone(harness, 0.2)
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        assert _gone(harness, 2.0)
    finally:
        owner.kill()
        owner.wait(5)
        if owner.stdout is not None:
            owner.stdout.close()
