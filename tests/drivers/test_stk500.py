"""The native STK500v1 programmer end to end, through open_device(), against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from labruntime.drivers import open_device
from labruntime.drivers.base import Device
from labruntime.drivers.capabilities import Programmer
from labruntime.drivers.errors import (
    DeviceBusyError,
    DeviceClosedError,
    DeviceIOError,
    DeviceTimeoutError,
    DeviceURLError,
    ImageError,
    OperationCancelled,
    ProgrammingError,
    VerifyError,
)
from labruntime.drivers.image import FirmwareImage
from labruntime.drivers.operations import Progress
from labruntime.drivers.registry import register_scheme, unregister_scheme, validate_device_url
from labruntime.drivers.sim.arduino import SimulatedArduino


def image(size: int, base: int = 0) -> FirmwareImage:
    return FirmwareImage(os.urandom(size), base, "random.bin")


def test_program_and_verify_through_open_device(tmp_path) -> None:
    img = image(2000, base=0x40)
    hexfile = tmp_path / "fw.hex"
    hexfile.write_text(img.to_ihex())
    events: list[Progress] = []
    with open_device("sim:arduino?baud=115200", name="uno") as dev:
        assert isinstance(dev, Programmer)
        result = dev.program(hexfile, progress=events.append)
        flash = dev.board.flash
        info = dev.describe()
        assert dev.board.wait_state("app", 1)  # LEAVE_PROGMODE starts the application
    assert dev.closed and not dev.board.running
    assert (result.bytes, result.verified) == (2000, True)
    assert result.seconds > 0
    assert flash[0x40 : 0x40 + 2000] == img.data
    assert flash[:0x40] == b"\xff" * 0x40
    pages = 17  # 0x00..0x840 in 128-byte pages
    assert [(e.stage, e.done) for e in events] == [("write", i) for i in range(1, pages + 1)] + [
        ("verify", i) for i in range(1, pages + 1)
    ]
    assert {e.total for e in events} == {pages}
    assert info["name"] == "uno" and "programmer" in info["capabilities"]
    assert info["part"]["name"] == "atmega328p" and info["simulator"]["faults"] == []
    assert info["program"] == "complete" and info["simulator"]["bootloader"] == "optiboot 4.4"
    assert json.loads(json.dumps(info)) == info


def test_program_after_close_is_refused() -> None:
    dev = open_device("sim:arduino")
    dev.close()
    dev.close()
    with pytest.raises(DeviceClosedError, match="closed"):
        dev.program(image(10))


def test_no_verify_and_estimate() -> None:
    with open_device("sim:arduino") as dev:
        img = image(4096)
        estimate = dev.estimate_seconds(img)
        # 32 pages of 141 bytes on the line once to write (33: page 0 is erased first), once
        # more to verify; 4.5 ms per page write; Optiboot's start-up and LED flashes (0.44 s)
        line = 33 * 141 * 10 / 115200
        writes = 33 * 0.0045
        verify = 32 * 141 * 10 / 115200
        assert line + writes + verify + 0.44 <= estimate < line + writes + verify + 0.7
        write_only = dev.estimate_seconds(img, verify=False)
        assert line + writes + 0.44 <= write_only < line + writes + 0.7
        assert estimate - write_only == pytest.approx(verify)
        result = dev.program(img, verify=False)
        assert result.verified is False
        assert dev.board.flash[:4096] == img.data


def test_stk500_scheme_on_the_simulators_tty_and_the_lease(caplog) -> None:
    with SimulatedArduino() as board:
        url = f"stk500:{board.tty_path}?baudrate=115200&part=m328p&reset=none"
        validate_device_url(url)
        with open_device(url) as dev:
            img = image(300)
            dev.program(img)
            assert board.flash[:300] == img.data
            with pytest.raises(DeviceBusyError, match="busy"):
                open_device(url)
        with open_device(url.replace("reset=none", "reset=dtr")) as dev:
            dev.program(image(10))  # a pty has no DTR: the port is reopened, which resets it
    assert "this port has no DTR: the board was not reset" in caplog.text


def test_verify_fault_names_the_address_and_leaves_no_runnable_program() -> None:
    with open_device("sim:arduino?fault=verify@0x1234") as dev:
        with pytest.raises(VerifyError, match="verify failed at 0x1234") as info:
            dev.program(image(0x2000))
        assert info.value.address == 0x1234
        assert isinstance(info.value, ProgrammingError)
        assert "the board holds no valid program" in str(info.value)
        assert dev.board.wait_state("app", 1) and not dev.board.program_runs
        assert dev.board.flash[:128] == b"\xff" * 128
        report = dev.safe()
        assert report.ok and report.state["program"] == "none"


def test_nosync_fails_fast_with_advice() -> None:
    with open_device("sim:arduino?fault=nosync&sync_timeout=0.5") as dev:
        started = time.monotonic()
        with pytest.raises(DeviceTimeoutError) as info:
            dev.program(image(100))
        assert time.monotonic() - started < 1.5
        message = str(info.value)
        for hint in ("no answer from the bootloader", "baud rate", "bootloader", "reset"):
            assert hint in message
        assert isinstance(info.value, TimeoutError)


@pytest.mark.slow
def test_nosync_default_gives_up_within_3_seconds() -> None:
    with open_device("sim:arduino?fault=nosync") as dev:
        started = time.monotonic()
        with pytest.raises(DeviceTimeoutError):
            dev.program(image(100))
        assert time.monotonic() - started < 3.5


def test_retries_caps_the_sync_attempts() -> None:
    with open_device("sim:arduino?fault=nosync&retries=2") as dev:
        with pytest.raises(DeviceTimeoutError, match="2 sync attempts"):
            dev.program(image(100))


def test_disconnect_mid_write_then_the_next_session_works() -> None:
    with open_device("sim:arduino?fault=disconnect@50") as dev:
        img = image(16 * 128)
        with pytest.raises(DeviceIOError, match="while writing at 0x400") as info:
            dev.program(img)
        assert isinstance(info.value, OSError)
        assert "the board holds no valid program" in str(info.value)  # page 0 went first
        report = dev.safe()  # reopens the port (a reset) and leaves programming mode for real
        assert report.ok and report.state == {
            "progmode": False,
            "reset": "released",
            "port": "open",
            "program": "none",
        }
        assert dev.board.disconnects == 1
        assert dev.board.wait_state("app", 1) and not dev.board.program_runs
        result = dev.program(img)  # the same path; the fault fired once
        assert result.verified and dev.board.flash[: len(img.data)] == img.data


def test_cancel_at_a_page_boundary_leaves_the_board_safe() -> None:
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.done == 3:
            cancel.set()

    with open_device("sim:arduino") as dev:
        img = image(10 * 128)
        with pytest.raises(OperationCancelled, match="the board holds no valid program"):
            dev.program(img, progress=progress, cancel=cancel)
        assert dev.board.pages_written == 4  # page 0 erased, then pages 1, 2 and 3
        assert dev.board.flash[128:512] == img.data[128:512]
        assert dev.board.flash[:128] == b"\xff" * 128
        assert dev.board.wait_state("app", 1) and not dev.board.program_runs
        assert not dev.ops.busy and dev.safe().state["program"] == "none"


def test_safe_from_another_thread_cancels_and_waits() -> None:
    with open_device("sim:arduino?fault=slow=4") as dev:
        errors: list[BaseException] = []
        started = threading.Event()

        def run() -> None:
            try:
                dev.program(image(64 * 128), progress=lambda e: started.set())
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        assert started.wait(5)
        report = dev.safe()
        worker.join(5)
        assert report.ok and report.state["progmode"] is False
        assert report.state["program"] == "none"
        assert len(errors) == 1 and isinstance(errors[0], OperationCancelled)
        assert dev.board.pages_written < 64


def test_deadline() -> None:
    with open_device("sim:arduino?fault=slow=10") as dev:
        with pytest.raises(DeviceTimeoutError, match="deadline"):
            dev.program(image(64 * 128), timeout=1.0)
        assert dev.board.wait_state("app", 1) and not dev.board.program_runs


def test_image_too_big_is_refused_before_touching_the_board() -> None:
    with open_device("sim:arduino") as dev:
        with pytest.raises(ImageError, match="32256 bytes"):
            dev.program(image(32 * 1024))
        assert dev.board.bytes_received == 0


def test_wrong_part_is_caught_by_the_signature() -> None:
    with SimulatedArduino(part="atmega168") as board:
        with open_device(f"stk500:{board.tty_path}?part=atmega328p&reset=none") as dev:
            with pytest.raises(ProgrammingError, match="set part=atmega168"):
                dev.program(image(100))
            assert board.pages_written == 0


def test_missing_port() -> None:
    with pytest.raises(DeviceIOError, match="cannot open serial port '/dev/nonexistent-tty'"):
        open_device("stk500:/dev/nonexistent-tty")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("stk500:/dev/ttyACM0?speed=115200", "unknown option 'speed'"),
        ("stk500:/dev/ttyACM0?part=pic16", "unknown AVR part"),
        ("stk500:/dev/ttyACM0?reset=maybe", "reset='maybe' must be dtr, none"),
        ("stk500:/dev/ttyACM0?sync_timeout=-1", "below"),
        ("stk500:/dev/ttyACM0?retries=x", "not an integer"),
    ],
)
def test_bad_stk500_urls_show_the_grammar(url: str, why: str) -> None:
    with pytest.raises(DeviceURLError, match=why) as info:
        validate_device_url(url)
    assert "stk500:PORT?baudrate=" in str(info.value)


def test_atmega2560_extended_addresses() -> None:
    with open_device("sim:arduino?part=atmega2560") as dev:
        img = image(3 * 256, base=0x1FF00)  # crosses the 128 KiB boundary
        dev.program(img)
        assert dev.board.flash[0x1FF00 : 0x1FF00 + 768] == img.data
        assert dev.board.flash[0xFF00:0x10000] == b"\xff" * 256


class RecordingLine(Device):
    """A reset line that records what the programmer does with it (a real registry scheme)."""

    scheme = "recline"
    instances: list[RecordingLine] = []

    def __init__(self, url: object, *, name: str | None = None) -> None:
        super().__init__(str(url), name=name)
        self.events: list[tuple[str, float]] = []
        RecordingLine.instances.append(self)

    def on(self) -> None:
        self.events.append(("on", time.monotonic()))

    def off(self) -> None:
        self.events.append(("off", time.monotonic()))

    @property
    def value(self) -> bool:
        return bool(self.events) and self.events[-1][0] == "on"

    def _drive_safe(self) -> dict[str, object]:
        self.off()
        return {"value": False}

    def _close(self) -> None:
        self.events.append(("close", time.monotonic()))


def test_reset_through_a_device_url() -> None:
    register_scheme("recline", RecordingLine)
    try:
        with SimulatedArduino() as board:
            url = f"stk500:{board.tty_path}?reset=recline:4&reset_pulse=0.05"
            with open_device(url, name="uno") as dev:
                RecordingLine.instances[-1].events.clear()
                dev.program(image(200))
                line = RecordingLine.instances[-1]
                events = list(line.events)
                assert line.name == "uno reset"
        kinds = [kind for kind, _ in events]
        assert kinds[:2] == ["on", "off"]
        assert events[1][1] - events[0][1] >= 0.05
        assert line.events[-1][0] == "close"  # closed with the programmer
    finally:
        unregister_scheme("recline")
        RecordingLine.instances.clear()


def test_sync_resets_the_board_again_every_second_attempt() -> None:
    register_scheme("recline", RecordingLine)
    try:
        with SimulatedArduino(faults="nosync") as board:
            url = f"stk500:{board.tty_path}?reset=recline:4&reset_pulse=0.01&retries=5"
            with open_device(url) as dev:
                line = RecordingLine.instances[-1]
                line.events.clear()
                started = time.monotonic()
                with pytest.raises(DeviceTimeoutError, match="5 sync attempts"):
                    dev.program(image(100), timeout=30)
                elapsed = time.monotonic() - started
                assert [kind for kind, _ in line.events].count("on") == 3  # attempts 1, 3, 5
                assert board.bytes_received == 5 * 2
        # one GET_SYNC at a time, each waited for: 0.1 + 0.6 + 0.3 s per reset
        assert elapsed >= 2 * (0.1 + 0.6 + 0.3) + 0.1 + 0.6
    finally:
        unregister_scheme("recline")
        RecordingLine.instances.clear()


def test_reset_on_a_mock_gpio_pin_ends_released() -> None:
    with SimulatedArduino() as board:
        url = f"stk500:{board.tty_path}?reset=gpio:4%3Ffactory%3Dmock"
        with open_device(url) as dev:
            dev.program(image(100))
            assert dev.describe()["reset"] == "gpio:4?factory=mock"
            assert dev.reset_line.value is False


@pytest.mark.parametrize(
    ("reset", "why"),
    [
        ("serial:loop://", "a serial device is a console"),
        ("gpio:4%3Fmode%3Din", "mode=in makes that pin an input"),
        ("sim:arduino", "a sim:arduino device is a programmer"),
        ("command:avrdude%3Fargs%3D{image}", "a command device is a programmer"),
    ],
)
def test_a_reset_url_that_is_no_output_is_refused_by_validate(reset: str, why: str) -> None:
    url = f"stk500:/dev/ttyACM0?reset={reset}"
    for check in (validate_device_url, open_device):
        with pytest.raises(DeviceURLError, match=why) as info:
            check(url)
        assert "bad option reset=" in str(info.value) and "digital output" in str(info.value)
        assert "Grammar: stk500:PORT?" in str(info.value)


def test_a_reset_device_without_the_output_capability_is_refused_at_open() -> None:
    with SimulatedArduino() as board:
        url = f"stk500:{board.tty_path}?reset=sim:gpio%3Fout%3D17"
        validate_device_url(url)  # sim:gpio is only known to be no output once open
        with pytest.raises(DeviceURLError, match="not a digital output") as info:
            open_device(url)
        assert "reset='sim:gpio?out=17'" in str(info.value)
        with open_device(f"stk500:{board.tty_path}?reset=none") as dev:  # port and lease freed
            dev.program(image(10))


LOCKER = """
import sys, serial
port = serial.Serial(sys.argv[1], exclusive=True)   # like screen or minicom: flock on the tty
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_port_that_another_program_holds_is_busy_naming_it(tmp_path) -> None:
    script = tmp_path / "minicom_like.py"
    script.write_text(LOCKER)
    with SimulatedArduino() as board:
        locker = subprocess.Popen(
            [sys.executable, str(script), board.tty_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            with pytest.raises(DeviceBusyError, match=f"held by pid {locker.pid} ") as info:
                open_device(f"stk500:{board.tty_path}?reset=none")
            assert str(script) in str(info.value)
            assert info.value.holder is not None and info.value.holder["pid"] == locker.pid
        finally:
            locker.kill()
            locker.communicate(timeout=10)
        with open_device(f"stk500:{board.tty_path}?reset=none") as dev:  # free once it is gone
            img = image(300)
            dev.program(img)
            assert board.flash[:300] == img.data


def test_a_lost_leave_progmode_is_reported_not_hidden() -> None:
    with open_device("sim:arduino?fault=noleave") as dev:
        img = image(300)
        with pytest.raises(DeviceTimeoutError, match="leaving programming mode") as info:
            dev.program(img)
        assert "no valid program" not in str(info.value)  # written and verified
        assert dev.board.flash[:300] == img.data
        report = dev.safe()  # LEAVE is lost again: no answer, not claimed safe
        assert not report.ok and "progmode" not in report.state
        assert "may still be in programming mode" in report.detail
        assert "Reset the board" in report.detail
        # Optiboot's watchdog starts the (complete) program 1 s after the last byte anyway
        assert dev.board.wait_state("app", 2) and dev.board.program_runs


def test_leave_progmode_after_a_vanished_port_is_reported() -> None:
    with open_device("sim:arduino?fault=disconnect@50") as dev:
        with pytest.raises(DeviceIOError, match="while writing"):
            dev.program(image(16 * 128))
        dev.board.stop()  # the board does not come back: its port is gone
        report = dev.safe()
        assert not report.ok
        assert "may still be in programming mode" in report.detail
        assert "cannot open serial port" in report.detail
