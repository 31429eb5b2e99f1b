"""The simulated Arduino on its own, byte by byte over a real pty: Optiboot 4.4's behaviour.

Each behaviour here is one a programmer can get wrong on a real Uno: a forgiving simulator
would let that programmer pass.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import serial

from labruntime.drivers.errors import DeviceURLError
from labruntime.drivers.sim.arduino import SimulatedArduino, validate
from labruntime.drivers.sim.faults import parse_faults
from labruntime.drivers.stk500_protocol import load_address, prog_page, read_page

SYNC = b"\x30\x20"
OK = b"\x14\x10"
#: from opening the port (a reset) to a listening bootloader: 65 ms start-up + 375 ms flashes
LISTENING = 0.5


@pytest.fixture
def board() -> Iterator[SimulatedArduino]:
    with SimulatedArduino() as sim:
        yield sim


def listening(board: SimulatedArduino, baud: int = 115200, timeout: float = 2) -> serial.Serial:
    """Open the port (which resets the board) and wait until the bootloader reads the UART."""
    ser = serial.Serial(board.tty_path, baud, timeout=timeout)
    time.sleep(LISTENING)
    return ser


@pytest.fixture
def port(board: SimulatedArduino) -> Iterator[serial.Serial]:
    ser = listening(board)
    try:
        yield ser
    finally:
        ser.close()


def ask(ser: serial.Serial, command: bytes, n: int) -> bytes:
    ser.write(command)
    return ser.read(n)


def test_power_on_runs_the_application_and_opening_the_port_resets(board) -> None:
    assert board.state == "app" and not board.program_runs  # no external reset, empty flash
    with serial.Serial(board.tty_path, 115200, timeout=2):
        assert board.wait_state("bootloader", 1)
        assert board.resets == 1
    assert board.wait_state("app", 2.5)  # nobody talked to it: its watchdog starts the sketch


def test_optiboot_answers(port: serial.Serial) -> None:
    assert ask(port, SYNC, 2) == OK
    assert ask(port, b"\x75\x20", 5) == b"\x14\x1e\x95\x0f\x10"  # READ_SIGN
    assert ask(port, b"\x41\x81\x20", 3) == b"\x14\x04\x10"  # software major 4
    assert ask(port, b"\x41\x82\x20", 3) == b"\x14\x04\x10"  # software minor 4
    assert ask(port, b"\x41\x80\x20", 3) == b"\x14\x03\x10"  # anything else: 3
    assert ask(port, b"\x56\x30\x00\x01\x00\x20", 3) == b"\x14\x00\x10"  # UNIVERSAL: always 0
    assert ask(port, b"\x42" + bytes(20) + b"\x20", 2) == OK  # SET_DEVICE
    assert ask(port, b"\x45\x05\x04\xd7\xc2\x00\x20", 2) == OK  # SET_DEVICE_EXT, 4 params
    assert ask(port, b"\x31\x20", 2) == OK  # GET_SIGN_ON: no "AVR STK" from optiboot
    assert ask(port, b"\x99\x20", 2) == OK  # an unknown command: just INSYNC OK


def test_a_badly_framed_command_gets_no_reply_and_starts_the_application(board, port) -> None:
    assert ask(port, b"\x30\x21", 1) == b""  # no NOSYNC: it waits for its watchdog
    assert board.state == "app"  # 16 ms later, and the read waited 2 s
    assert ask(port, SYNC, 2) == b""  # the sketch runs: nobody answers until a reset


def test_deaf_during_the_start_up_and_the_led_flashes(board) -> None:
    with serial.Serial(board.tty_path, 115200, timeout=1) as ser:
        ser.write(SYNC)  # at once: the UART is still off (65 ms start-up), the bytes are lost
        time.sleep(0.15)
        started = time.monotonic()
        ser.write(SYNC)  # during the flashes: it waits in the UART until they end
        assert ser.read(2) == OK
        waited = time.monotonic() - started
    assert waited > 0.2  # answered when the flashes ended, ~0.44 s after the open
    assert board.bytes_lost == 2


def test_more_than_three_bytes_during_the_flashes_overrun_and_knock_it_out(board) -> None:
    with serial.Serial(board.tty_path, 115200, timeout=1) as ser:
        time.sleep(0.1)
        for _ in range(3):  # a programmer that sends GET_SYNC every 0.1 s without waiting
            ser.write(SYNC)
            time.sleep(0.1)
        assert ser.read(4) == OK  # the first is answered...
        assert board.wait_state("app", 1)  # ...then a leftover 0x20 + 0x30 is a bad command
        ser.write(SYNC)
        assert ser.read(2) == b""
    assert board.bytes_lost >= 3


def test_one_second_without_a_byte_starts_the_application(board, port) -> None:
    assert ask(port, SYNC, 2) == OK
    time.sleep(0.8)
    assert ask(port, SYNC, 2) == OK  # each byte restarts its watchdog
    assert board.wait_state("app", 1.5)
    assert ask(port, SYNC, 2) == b""


def test_leave_progmode_starts_the_application_and_nothing_answers(board, port) -> None:
    assert ask(port, b"\x50\x20", 2) == OK
    assert ask(port, b"\x51\x20", 2) == OK
    assert board.wait_state("app", 0.1)
    port.timeout = 0.5
    assert ask(port, SYNC, 2) == b""
    port.close()
    port.open()  # a new open resets it, however soon it follows the close
    time.sleep(LISTENING)
    assert ask(port, SYNC, 2) == OK


def test_page_write_read_back_and_the_chips_write_time(board, port) -> None:
    data = os.urandom(128)
    assert ask(port, b"\x50\x20", 2) == OK
    port.write(load_address(0x200) + prog_page(data))
    assert port.read(3) == OK + b"\x14"  # INSYNC goes out before the page is written
    started = time.monotonic()
    assert port.read(1) == b"\x10"  # OK once it is written: the chip's 4.5 ms
    assert time.monotonic() - started >= 0.004
    assert board.flash[0x200:0x280] == data
    assert board.flash[:0x200] == b"\xff" * 0x200
    reply = ask(port, load_address(0x200) + read_page(128), 4 + 128)
    assert reply[:3] == b"\x14\x10\x14" and reply[-1:] == b"\x10"
    assert reply[3:-1] == data
    # the lock bits protect the bootloader section
    boot = board.part.app_size
    assert ask(port, load_address(boot) + prog_page(b"\x00" * 128), 4) == OK + OK
    assert board.flash[boot : boot + 128] == b"\xff" * 128
    assert board.pages_written == 1
    assert ask(port, b"\x51\x20", 2) == OK
    assert board.wait_state("app", 0.1) and board.program_runs is False  # page 0 is empty


def test_a_page_sent_before_the_previous_one_is_answered_overruns(board, port) -> None:
    page = b"\x01" * 128
    port.write(load_address(0) + prog_page(page) + load_address(128) + prog_page(page))
    assert port.read(8) == OK + OK  # the first page only: the second came during its write
    assert board.wait_state("app", 1)
    assert board.flash[128:256] == b"\xff" * 128


def test_pacing_follows_the_baud_rate() -> None:
    with SimulatedArduino(baudrate=19200) as sim:
        ser = listening(sim, 19200, timeout=5)
        try:
            ask(ser, SYNC, 2)
            started = time.monotonic()
            reply = ask(ser, load_address(0) + read_page(256), 4 + 256)
            elapsed = time.monotonic() - started
        finally:
            ser.close()
    assert len(reply) == 260
    # 260 bytes out of the board at 10 bits each; the 9 bytes in overlap (full duplex)
    assert elapsed >= 260 * 10 / 19200 * 0.98


def test_a_host_at_another_baud_rate_sends_and_reads_garbage(board) -> None:
    ser = listening(board, 57600, timeout=0.5)
    try:
        assert ask(ser, SYNC, 2) != OK
        assert board.wait_state("app", 1.5)  # garbage is not a command it can follow
    finally:
        ser.close()


def test_slow_fault_divides_the_rate() -> None:
    with SimulatedArduino(baudrate=115200, faults="slow=8") as sim:
        ser = listening(sim, timeout=5)
        try:
            started = time.monotonic()
            reply = ask(ser, load_address(0) + read_page(128), 4 + 128)
            elapsed = time.monotonic() - started
        finally:
            ser.close()
    assert len(reply) == 132
    assert elapsed >= (132 + 4) * 10 / 115200 * 8 * 0.98


def test_short_start_up() -> None:
    with SimulatedArduino(startup=0.004, flashes=0) as sim:
        with serial.Serial(sim.tty_path, 115200, timeout=1) as ser:
            time.sleep(0.01)
            started = time.monotonic()
            assert ask(ser, SYNC, 2) == OK
            assert time.monotonic() - started < 0.3  # no 0.375 s of flashes first


def test_nosync_never_answers() -> None:
    with SimulatedArduino(faults="nosync") as sim:
        ser = listening(sim, timeout=0.3)
        try:
            assert ask(ser, SYNC * 3, 2) == b""
        finally:
            ser.close()
        assert sim.bytes_received == 6


def test_verify_fault_corrupts_one_byte() -> None:
    with SimulatedArduino(faults="verify@0x123") as sim:
        ser = listening(sim)
        try:
            data = bytes(range(128))
            assert ask(ser, load_address(0x100) + prog_page(data), 4) == OK + OK
        finally:
            ser.close()
        flash = sim.flash
    assert flash[0x123] == data[0x23] ^ 0xFF
    assert flash[0x100:0x123] == data[:0x23] and flash[0x124:0x180] == data[0x24:]


def test_disconnect_fault_fires_once_and_the_board_comes_back() -> None:
    with SimulatedArduino(faults="disconnect@50") as sim:
        sim.announce_pages(4)
        path, pts = sim.tty_path, sim.pts_path
        ser = listening(sim)
        try:
            assert ask(ser, b"\x50\x20", 2) == OK
            for page in range(2):
                assert ask(ser, load_address(page * 128) + prog_page(b"\x01" * 128), 4) == OK + OK
            with pytest.raises(serial.SerialException):
                ask(ser, load_address(256) + prog_page(b"\x01" * 128), 4)
        finally:
            ser.close()
        assert sim.disconnects == 1 and sim.state == "app"  # power-cycled
        assert sim.tty_path == path and os.path.realpath(path) == sim.pts_path
        ser = listening(sim)
        try:  # same path, new pty, and the fault does not fire again
            assert ask(ser, SYNC, 2) == OK
            for page in range(4):
                assert ask(ser, load_address(page * 128) + prog_page(b"\x02" * 128), 4) == OK + OK
        finally:
            ser.close()
        assert sim.flash[:512] == b"\x02" * 512
    assert pts is not None


def test_each_open_resets_and_stop_cleans_up() -> None:
    before = {t.name for t in threading.enumerate()}
    sim = SimulatedArduino()
    path = sim.start()
    for n in range(1, 3):
        ser = listening(sim)
        try:
            assert ask(ser, SYNC, 2) == OK
        finally:
            ser.close()
        assert sim.resets == n
    assert sim.running
    sim.stop()
    sim.stop()  # idempotent
    assert not os.path.exists(path)
    assert not sim.running
    assert {t.name for t in threading.enumerate()} <= before | {"MainThread"}
    with pytest.raises(RuntimeError, match="start"):
        _ = sim.tty_path


def test_the_reset_line() -> None:
    with SimulatedArduino() as sim:
        with serial.Serial(sim.tty_path, 115200, timeout=1) as ser:
            assert sim.wait_state("bootloader", 1)
            assert sim.wait_state("app", 2)
            sim.reset()  # the DTR auto-reset a sim:arduino device pulses
            assert sim.wait_state("bootloader", 1)
            time.sleep(LISTENING)
            assert ask(ser, SYNC, 2) == OK
        assert sim.resets == 2


def test_fault_grammar() -> None:
    faults = parse_faults("nosync, verify@0x10,disconnect@25%,slow=2.5")
    assert faults.nosync and faults.verify_at == 16
    assert faults.disconnect_at == 25 and faults.slow == 2.5
    assert parse_faults(["slow=2", "verify@7"]).to_list() == ["verify@0x7", "slow=2"]
    assert parse_faults("NoLeave,slow=2").to_list() == ["slow=2", "noleave"]
    for bad, why in [
        ("explode", "unknown fault"),
        ("verify@zz", "integer"),
        ("disconnect@150", "0 to 100"),
        ("slow=0", "above 0"),
        ("slow=x", "number"),
    ]:
        with pytest.raises(DeviceURLError, match=why) as info:
            parse_faults(bad)
        assert "Grammar: nosync | verify@ADDR" in str(info.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sim:arduino?baud=abc", "not an integer"),
        ("sim:arduino?colour=red", "unknown option 'colour'"),
        ("sim:arduino?part=attiny13", "unknown AVR part"),
        ("sim:arduino?fault=boom", "unknown fault"),
        ("sim:arduino?baud=9600&baudrate=9600", "not both"),
        ("sim:arduino?reset=gpio:4", "must be one of dtr, none"),
        ("sim:arduino?startup=-1", "below"),
        ("sim:arduino?flashes=x", "not an integer"),
        ("sim:toaster", "sim:arduino"),
    ],
)
def test_bad_sim_urls(url: str, why: str) -> None:
    with pytest.raises(DeviceURLError, match=why):
        validate(url)


def test_good_sim_url_validates() -> None:
    validate(
        "sim:arduino?baud=57600&part=m168&fault=slow=2,verify@0x10&sync_timeout=1"
        "&reset=none&startup=0.004&flashes=0"
    )


def test_sim_arduino_device_is_leased_under_its_tty() -> None:
    """An stk500: URL on the simulator's tty finds it busy while the sim:arduino handle lives."""
    from labruntime.drivers import DeviceBusyError, open_device

    with open_device("sim:arduino?baud=1000000") as dev:
        with pytest.raises(DeviceBusyError, match=r"busy: held by this process"):
            open_device(f"stk500:{dev.port}?reset=none")
        assert dev.lease is not None and dev.lease.key == os.path.realpath(dev.port)
    assert not dev.lease.held  # released on close
