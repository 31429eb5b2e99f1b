"""labruntime device check|program and labruntime sim arduino (CliRunner + real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from labruntime.cli.devices import device_group, sim_group
from labruntime.drivers import SimulatedArduino
from labruntime.drivers.image import FirmwareImage

FAKE = Path(__file__).with_name("fake_tool.py")
LABRUNTIME = Path(sys.executable).with_name("labruntime")


def labruntime_argv(*args: str) -> list[str]:
    if LABRUNTIME.exists():
        return [str(LABRUNTIME), *args]
    return [sys.executable, "-m", "labruntime.cli", *args]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "blink.hex"
    path.write_text(FirmwareImage(bytes(range(256)) * 4).to_ihex())
    return path


def test_check_prints_a_readable_description(runner: CliRunner) -> None:
    result = runner.invoke(device_group, ["check", "serial:loop://?baudrate=9600"])
    assert result.exit_code == 0, result.output
    assert "device: serial:loop://?baudrate=9600" in result.output
    assert "capabilities: console" in result.output
    assert "baudrate: 9600" in result.output
    assert "safe: ok" in result.output


def test_check_json(runner: CliRunner) -> None:
    result = runner.invoke(device_group, ["check", "--json", "sim:gpio?wired=17-27&safe=1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["safe"]["ok"] is True
    assert data["device"]["wired"] == ["GPIO17-GPIO27"]
    assert data["safe"]["state"]["inputs"]["GPIO27"]["value"] == 1  # safe=1 drove the loop


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["check", "toaster:1"], 2, "known schemes: command, gpio"),
        (["check", "serial:loop://?speed=1"], 2, "unknown option 'speed'"),
        (["check", "serial:/dev/ttyNOPE"], 1, "Check the cable"),
        (["check", "gpio:77?factory=mock"], 2, "not a GPIO pin name"),
    ],
)
def test_check_errors_are_one_line(
    runner: CliRunner, args: list[str], code: int, message: str
) -> None:
    result = runner.invoke(device_group, args)
    assert result.exit_code == code
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_program_with_an_external_tool_shows_progress(runner: CliRunner, firmware: Path) -> None:
    url = f"command:{sys.executable}?args={FAKE} esptool {{image}}"
    result = runner.invoke(device_group, ["program", url, str(firmware)])
    assert result.exit_code == 0, result.output
    assert "write" in result.output  # the progress bar's label
    assert "programmed 1024 bytes in" in result.output and "verified" in result.output
    assert "(about 1.8 s)" in result.output  # 1.5 s + 0.26 ms per byte
    result = runner.invoke(device_group, ["program", url, str(firmware), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert "(about 1.7 s)" in result.output  # no read-back: 1.5 s + 0.16 ms per byte


def test_program_no_verify_and_tool_failure(runner: CliRunner, firmware: Path) -> None:
    url = f"command:{sys.executable}?no_verify=-V&args={FAKE} fail {{image}}"
    result = runner.invoke(device_group, ["program", url, str(firmware), "--no-verify"])
    assert result.exit_code == 1
    assert "\nError: " in result.output and "programmer is not responding" in result.output
    assert "extra=['-V']" in result.output and "Traceback" not in result.output


def test_program_refuses_a_device_that_is_not_a_programmer(
    runner: CliRunner, firmware: Path
) -> None:
    result = runner.invoke(device_group, ["program", "serial:loop://", str(firmware)])
    assert result.exit_code == 2
    assert "cannot be programmed (its capabilities: console)" in result.output


def test_program_a_bad_hex_file(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hex"
    bad.write_text(":10000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF01\n")
    result = runner.invoke(device_group, ["program", "sim:arduino", str(bad)])
    assert result.exit_code == 1
    assert "Error: " in result.output and "bad.hex" in result.output and "line 1" in result.output
    assert "Traceback" not in result.output


def test_program_the_simulated_board(runner: CliRunner, firmware: Path) -> None:
    result = runner.invoke(device_group, ["program", "sim:arduino?baud=1000000", str(firmware)])
    assert result.exit_code == 0, result.output
    assert "programmed 1024 bytes" in result.output and ", verified" in result.output


def test_sim_arduino_bad_options(runner: CliRunner) -> None:
    result = runner.invoke(sim_group, ["arduino", "--fault", "explode"])
    assert result.exit_code == 2 and result.output.startswith("Error: ")
    assert "nosync" in result.output  # the fault grammar
    result = runner.invoke(sim_group, ["arduino", "--part", "z80"])
    assert result.exit_code == 2 and result.output.startswith("Error: ")
    assert "atmega328p" in result.output
    result = runner.invoke(sim_group, ["arduino", "--flashes", "-1"])
    assert result.exit_code == 2 and "--flashes" in result.output


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``labruntime sim arduino`` as a real process: (process, tty path from its first line)."""
    proc = subprocess.Popen(
        labruntime_argv("sim", "arduino", "--baud", "115200", "--startup", "0.004"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    path = proc.stdout.readline().strip()
    yield proc, path
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


@pytest.mark.slow
def test_sim_arduino_process_prints_its_tty_first_and_stops_on_sigterm(
    sim_process: tuple[subprocess.Popen[str], str], runner: CliRunner, firmware: Path
) -> None:
    proc, path = sim_process
    assert os.path.exists(path), path
    result = runner.invoke(device_group, ["program", f"stk500:{path}", str(firmware)])
    assert result.exit_code == 0, result.output
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "avrdude -c arduino" in err and "stopped" in err
    assert not os.path.exists(path)


@pytest.mark.slow
def test_sim_arduino_stops_on_sigint(sim_process: tuple[subprocess.Popen[str], str]) -> None:
    proc, path = sim_process
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 0 and not os.path.exists(path)


@pytest.mark.slow
def test_real_avrdude_through_the_command_driver(
    sim_process: tuple[subprocess.Popen[str], str], runner: CliRunner, firmware: Path
) -> None:
    if shutil.which("avrdude") is None:
        pytest.skip("avrdude is not installed (apt-get install avrdude; tools/test.sh does it)")
    _proc, path = sim_process
    url = (
        f"command:avrdude?port={path}&no_verify=-V"
        "&args=-c arduino -p m328p -P {port} -b 115200 -U flash:w:{image}:i"
    )
    result = runner.invoke(device_group, ["program", url, str(firmware)])
    assert result.exit_code == 0, result.output
    assert "programmed 1024 bytes" in result.output
    assert "write" in result.output and "verify" in result.output  # avrdude's bars, parsed


@pytest.fixture
def board() -> Iterator[SimulatedArduino]:
    with SimulatedArduino(baudrate=1_000_000) as sim:
        yield sim


def test_program_refuses_a_too_big_image_before_touching_the_board(
    runner: CliRunner, board: SimulatedArduino, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x0c" * 40_000)
    result = runner.invoke(device_group, ["program", f"stk500:{board.tty_path}", str(big)])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {big}:")
    assert "only 32256 bytes" in result.output and "programming" not in result.output
    assert board.bytes_received == 0 and board.flash == b"\xff" * len(board.flash)


def test_program_reads_the_file_before_opening_the_port(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.hex"
    bad.write_text(":0400000001020304F2\n:0400040001020304EF\n:00000001FF\n")
    result = runner.invoke(device_group, ["program", "stk500:/dev/ttyNOPE", str(bad)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "bad.hex line 2: bad checksum" in result.output
    assert "ttyNOPE" not in result.output  # the port was never opened


def test_a_board_vanishing_mid_write_is_an_io_error_then_safe(
    runner: CliRunner, tmp_path: Path
) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 40)
    url = "sim:arduino?baud=1000000&fault=disconnect@50"
    result = runner.invoke(device_group, ["program", url, str(image)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output[result.output.index("Error: ") :]
    assert "failed while writing at 0x" in error and "unplugged" in error
    assert error.endswith("device left safe (safe state reached)\n")


def test_sim_arduino_suggests_avrdude_with_its_part_name(
    sim_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, path = sim_process
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=10)
    assert f"avrdude -c arduino -p m328p -P {path} -b 115200" in err


@pytest.mark.slow
def test_ctrl_c_during_program_cancels_and_leaves_the_board_safe(tmp_path: Path) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 100)  # ~5.6 s at 115200 baud slowed 2x: time to stop
    proc = subprocess.Popen(
        labruntime_argv("device", "program", "sim:arduino?fault=slow=2", str(image)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LABRUNTIME_LOCK_DIR": str(tmp_path / "locks")},
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        while " INFO " in first:  # the CLI's log lines (the simulator starting)
            first = proc.stderr.readline()
        assert first.startswith("programming ")
        assert proc.stderr.read(8).strip() == "write"  # the bar has started
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Error: interrupted; device left safe" in err and "Traceback" not in err
    assert "programmed" not in out


def test_program_a_board_someone_holds_names_the_holder(runner: CliRunner, firmware: Path) -> None:
    from labruntime.drivers import open_device

    with open_device("sim:arduino?baud=1000000") as held:
        result = runner.invoke(device_group, ["program", f"stk500:{held.port}", str(firmware)])
        assert result.exit_code == 1 and result.output.startswith("Error: device ")
        assert f"is busy: held by this process pid {os.getpid()}" in result.output
        assert held.board.bytes_received == 0  # the holder's board was not touched


def test_ctrl_c_cancels_at_a_page_boundary_and_leaves_progmode(
    runner: CliRunner, tmp_path: Path
) -> None:
    """The first Ctrl-C is a cancel at a safe point: whole pages only, progmode left, no junk."""
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(range(256)) * 100)
    with SimulatedArduino(baudrate=115200, faults="slow=4") as sim:

        def interrupt_after_some_pages() -> None:
            deadline = time.monotonic() + 20
            while sim.pages_written < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # the command's handler turns it into a cancel

        thread = threading.Thread(target=interrupt_after_some_pages)
        thread.start()
        previous = signal.getsignal(signal.SIGINT)
        try:
            result = runner.invoke(device_group, ["program", f"stk500:{sim.tty_path}", str(image)])
        finally:
            thread.join(20)
        assert signal.getsignal(signal.SIGINT) is previous  # handler restored
        assert result.exit_code == 130, result.output
        assert "Error: interrupted; device left safe" in result.output
        written = sim.pages_written  # page 0 erased first, then pages 1, 2...
        assert 5 <= written < 200
        assert sim.wait_state("app", 1)  # LEAVE_PROGMODE was understood
        assert not sim.program_runs  # page 0, the reset vector, is still erased
        flash = sim.flash
        data = image.read_bytes()
        assert flash[:128] == b"\xff" * 128
        assert flash[128 : written * 128] == data[128 : written * 128]  # whole pages, in order
        assert flash[written * 128 :] == b"\xff" * (len(flash) - written * 128)


def test_every_url_in_the_device_help_is_valid(runner: CliRunner) -> None:
    from labruntime.drivers import validate_device_url

    result = runner.invoke(device_group, ["--help"])
    assert result.exit_code == 0
    examples = result.output.split("Examples", 1)[1].split("Options:", 1)[0]
    lines = [line.strip() for line in examples.splitlines()[1:] if line.strip()]
    urls = [u for line in lines for u in (line.split("     ") if "args=" not in line else [line])]
    urls = [u.strip() for u in urls if u.strip()]
    assert len(urls) == 9
    for url in urls:
        assert validate_device_url(url).raw == url
