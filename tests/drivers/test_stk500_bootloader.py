"""The native STK500 programmer on boards set up the ways real ones are (issue 13).

The simulated board runs Optiboot 4.4's timing (deaf start-up and LED flashes, a 3-byte UART,
1 s watchdog, no reply to a badly framed command, 4.5 ms page writes). Each test is a setup
where a programmer that does not wait for the bootloader fails on a real Uno; the last tests
turn the driver into such a programmer and show that the suite catches it.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from labruntime.drivers import open_device
from labruntime.drivers.errors import DeviceTimeoutError, DriverError, OperationCancelled
from labruntime.drivers.image import FirmwareImage
from labruntime.drivers.operations import Progress
from labruntime.drivers.sim.arduino import SimulatedArduino
from labruntime.drivers.stk500 import Stk500Programmer
from labruntime.drivers.stk500_protocol import Stk500Link, load_address, prog_page

#: a few pages starting at the reset vector: what a sketch looks like
SKETCH = FirmwareImage(bytes([0x0C, 0x94]) + os.urandom(6 * 128 - 2), 0, "sketch")


def programs(url: str, img: FirmwareImage = SKETCH) -> SimulatedArduino:
    """Program ``img`` through ``url`` (a sim:arduino device); the board, which then runs it."""
    with open_device(url) as dev:
        result = dev.program(img)
        board = dev.board
        assert result.verified and board.flash[: len(img.data)] == img.data
        assert board.wait_state("app", 1) and board.program_runs
    return board


def test_no_dtr_a_board_reset_only_by_opening_its_port() -> None:
    with SimulatedArduino() as board:
        with open_device(f"stk500:{board.tty_path}?reset=none") as dev:
            time.sleep(1.6)  # the reset at open is long over: the (empty) application runs
            assert board.state == "app"
            dev.program(SKETCH)  # reopens the port: the only reset this board gets
            assert board.wait_state("app", 1) and board.program_runs
            dev.program(SKETCH)  # and again
        assert board.resets == 3


def test_reset_dtr_on_a_port_without_modem_lines_says_so(caplog) -> None:
    with SimulatedArduino() as board:
        with open_device(f"stk500:{board.tty_path}") as dev:
            with caplog.at_level(logging.WARNING):
                dev.program(SKETCH)  # the reopen resets this board
        assert "this port has no DTR: the board was not reset" in caplog.text
        assert board.wait_state("app", 1) and board.program_runs
    with SimulatedArduino(faults="nosync") as board:  # now a board that does not answer
        with open_device(f"stk500:{board.tty_path}?sync_timeout=1") as dev:
            with pytest.raises(DeviceTimeoutError) as info:
                dev.program(SKETCH)
    message = str(info.value)
    assert "no answer from the bootloader" in message
    assert "This port has no DTR: the board was not reset" in message


def test_the_simulated_dtr_line() -> None:
    board = programs("sim:arduino")
    assert board.resets == 2  # the open, then the programmer's DTR pulse


@pytest.mark.parametrize(
    "setup",
    [
        "startup=0.004",  # short start-up fuses: the first GET_SYNC arrives during the flashes
        "startup=0.004&flashes=0",  # no LED flashes either: it listens at once
        "startup=0&flashes=1",
        "flashes=4",  # a longer flash sequence (0.5 s) than the Uno's
        "reset=none",  # no DTR wiring: only opening the port resets it
        "reset=none&startup=0.004",
        "baud=57600",
        "baud=1000000",  # the page erase is no longer hidden behind the page's bytes
    ],
)
def test_programs_boards_with_other_timings(setup: str) -> None:
    programs(f"sim:arduino?{setup}")


def test_stray_bytes_that_knock_the_bootloader_out() -> None:
    with open_device("sim:arduino") as dev:
        board = dev.board
        assert board.wait_state("bootloader", 1)
        time.sleep(0.5)
        dev._ser.write(b"\x00 noise \xff")  # line noise, a terminal's keystrokes...
        assert board.wait_state("app", 1)  # a bad command: the sketch starts
        dev.program(SKETCH)  # reset, and in sync again
        assert board.wait_state("app", 1) and board.program_runs


def test_a_stale_answer_waiting_in_the_input_buffer() -> None:
    with open_device("sim:arduino") as dev:
        time.sleep(0.5)
        dev._ser.write(b"\x30\x20\x75\x20")  # answered, and nobody reads the answers
        time.sleep(0.1)
        dev.program(SKETCH)
        assert dev.board.wait_state("app", 1) and dev.board.program_runs


def test_a_wrong_baud_rate_is_diagnosed() -> None:
    with SimulatedArduino(baudrate=115200) as board:
        url = f"stk500:{board.tty_path}?baudrate=57600&reset=none&sync_timeout=1.5"
        with open_device(url) as dev:
            started = time.monotonic()
            with pytest.raises(DeviceTimeoutError, match="baud rate") as info:
                dev.program(SKETCH)
            assert time.monotonic() - started < 2.5
    assert "no answer from the bootloader" in str(info.value)


def test_a_cancelled_write_leaves_no_runnable_program() -> None:
    cancel = threading.Event()

    def progress(event: Progress) -> None:
        if event.stage == "write" and event.done == 3:
            cancel.set()

    with open_device("sim:arduino") as dev:
        board = dev.board
        dev.program(SKETCH)
        assert board.wait_state("app", 1) and board.program_runs  # a good program runs
        new = FirmwareImage(bytes([0x0C, 0x94]) + os.urandom(10 * 128 - 2), 0, "new")
        with pytest.raises(OperationCancelled) as info:
            dev.program(new, progress=progress, cancel=cancel)
        assert "the board holds no valid program" in str(info.value)
        assert board.wait_state("app", 1)
        assert not board.program_runs  # neither the old program nor half of the new one
        assert board.flash[:128] == b"\xff" * 128
        assert board.flash[128 : 4 * 128] == new.data[128 : 4 * 128]
        report = dev.safe()
        assert report.ok and report.state["program"] == "none"
        assert dev.describe()["program"] == "none"
        dev.program(new)  # programming again fixes it
        assert board.wait_state("app", 1) and board.program_runs


def test_an_unplugged_board_runs_no_half_written_program() -> None:
    with open_device("sim:arduino?fault=disconnect@50") as dev:
        board = dev.board
        with pytest.raises(DriverError, match="the board holds no valid program"):
            dev.program(FirmwareImage(bytes([0x0C, 0x94]) + os.urandom(16 * 128 - 2), 0, "x"))
        assert board.state == "app" and not board.program_runs  # back, power-cycled: nothing
        assert board.flash[128:256] != b"\xff" * 128  # some pages were written


def test_an_image_without_the_reset_vector_is_written_in_order() -> None:
    with open_device("sim:arduino") as dev:
        img = FirmwareImage(os.urandom(3 * 128), 0x1000, "tail")
        dev.program(img)
        assert dev.board.pages_written == 3


# -- the suite catches a programmer that does not wait (issue 13's two mutations) ------------
def test_mutation_sync_every_0_1_s_without_waiting_fails(monkeypatch) -> None:
    """The old driver: GET_SYNC every 0.1 s from the reset on, each answer awaited 0.1 s."""
    monkeypatch.setattr(Stk500Programmer, "startup_wait", 0.0)
    monkeypatch.setattr(Stk500Programmer, "first_sync_wait", 0.1)
    monkeypatch.setattr(Stk500Programmer, "sync_wait", 0.1)
    monkeypatch.setattr(Stk500Programmer, "syncs_per_reset", 30)
    with open_device("sim:arduino?sync_timeout=3") as dev:
        with pytest.raises(DriverError):
            dev.program(SKETCH)
        assert dev.board.bytes_lost > 0  # overrun in the UART while the LED flashed


def test_mutation_a_second_page_before_the_first_is_answered_fails(monkeypatch) -> None:
    """Pages pipelined: the next page goes out before the reply to the previous one is read."""
    owed: dict[int, int] = {}

    def write_page(self: Stk500Link, address: int, data: bytes) -> None:
        self.port.write(load_address(address) + prog_page(data))
        if owed.get(id(self)):
            if len(self.port.read(4)) < 4:
                raise DeviceTimeoutError("no reply to the previous page")
        owed[id(self)] = 4

    monkeypatch.setattr(Stk500Link, "write_page", write_page)
    with open_device("sim:arduino") as dev:
        with pytest.raises(DriverError):
            dev.program(SKETCH)
        assert dev.board.wait_state("app", 2) and not dev.board.program_runs


def test_without_the_mutations_the_same_programs_pass() -> None:
    programs("sim:arduino?sync_timeout=3")
