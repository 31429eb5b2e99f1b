"""The simulated Arduino on its own: STK500v1 answers over a real pty, pacing, faults."""

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


@pytest.fixture
def board() -> Iterator[SimulatedArduino]:
    with SimulatedArduino() as sim:
        yield sim


@pytest.fixture
def port(board: SimulatedArduino) -> Iterator[serial.Serial]:
    ser = serial.Serial(board.tty_path, 115200, timeout=2)
    try:
        yield ser
    finally:
        ser.close()


def ask(ser: serial.Serial, command: bytes, n: int) -> bytes:
    ser.write(command)
    return ser.read(n)


def test_sync_signature_and_parameters(port: serial.Serial) -> None:
    assert ask(port, SYNC, 2) == OK
    assert ask(port, b"\x75\x20", 5) == b"\x14\x1e\x95\x0f\x10"
    assert ask(port, b"\x41\x81\x20", 3) == b"\x14\x08\x10"  # software major 8
    assert ask(port, b"\x41\x82\x20", 3) == b"\x14\x00\x10"
    assert ask(port, b"\x56\x30\x00\x01\x00\x20", 3) == b"\x14\x95\x10"  # universal: sig byte 1
    assert ask(port, b"\x42" + bytes(20) + b"\x20", 2) == OK  # SET_DEVICE
    assert ask(port, b"\x45\x05\x04\xd7\xc2\x00\x20", 2) == OK  # SET_DEVICE_EXT, 4 params


def test_unknown_command_and_lost_framing(port: serial.Serial) -> None:
    assert ask(port, b"\x99\x20", 2) == b"\x14\x12"  # INSYNC, UNKNOWN
    assert ask(port, b"\x30\x21", 1) == b"\x15"  # no CRC_EOP: NOSYNC
    port.reset_input_buffer()
    assert ask(port, SYNC, 2) == OK  # and it resynchronises


def test_page_write_and_read_back(board: SimulatedArduino, port: serial.Serial) -> None:
    data = os.urandom(128)
    assert ask(port, b"\x50\x20", 2) == OK
    assert ask(port, load_address(0x200) + prog_page(data), 4) == OK + OK
    assert board.flash[0x200:0x280] == data
    assert board.flash[:0x200] == b"\xff" * 0x200
    reply = ask(port, load_address(0x200) + read_page(128), 4 + 128)
    assert reply[:3] == b"\x14\x10\x14" and reply[-1:] == b"\x10"
    assert reply[3:-1] == data
    # the bootloader section cannot be overwritten
    boot = board.part.app_size
    assert ask(port, load_address(boot) + prog_page(b"\x00" * 128), 4) == OK + OK
    assert board.flash[boot : boot + 128] == b"\xff" * 128
    assert ask(port, b"\x51\x20", 2) == OK
    assert not board.bootloader.progmode


def test_pacing_follows_the_baud_rate() -> None:
    with SimulatedArduino(baudrate=19200) as sim:
        ser = serial.Serial(sim.tty_path, 19200, timeout=5)
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


def test_slow_fault_divides_the_rate() -> None:
    with SimulatedArduino(baudrate=115200, faults="slow=8") as sim:
        ser = serial.Serial(sim.tty_path, 115200, timeout=5)
        try:
            started = time.monotonic()
            reply = ask(ser, load_address(0) + read_page(128), 4 + 128)
            elapsed = time.monotonic() - started
        finally:
            ser.close()
    assert len(reply) == 132
    assert elapsed >= (132 + 4) * 10 / 115200 * 8 * 0.98


def test_nosync_never_answers() -> None:
    with SimulatedArduino(faults="nosync") as sim:
        ser = serial.Serial(sim.tty_path, 115200, timeout=0.3)
        try:
            assert ask(ser, SYNC * 3, 2) == b""
        finally:
            ser.close()
        assert sim.bytes_received == 6


def test_verify_fault_corrupts_one_byte() -> None:
    with SimulatedArduino(faults="verify@0x123") as sim:
        ser = serial.Serial(sim.tty_path, 115200, timeout=2)
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
        ser = serial.Serial(path, 115200, timeout=2)
        try:
            assert ask(ser, b"\x50\x20", 2) == OK
            for page in range(2):
                assert ask(ser, load_address(page * 128) + prog_page(b"\x01" * 128), 4) == OK + OK
            with pytest.raises(serial.SerialException):
                ask(ser, load_address(256) + prog_page(b"\x01" * 128), 4)
        finally:
            ser.close()
        assert sim.disconnects == 1
        assert sim.tty_path == path and os.path.realpath(path) == sim.pts_path
        ser = serial.Serial(path, 115200, timeout=2)
        try:  # same path, new pty, and the fault does not fire again
            assert ask(ser, SYNC, 2) == OK
            assert ask(ser, b"\x50\x20", 2) == OK
            for page in range(4):
                assert ask(ser, load_address(page * 128) + prog_page(b"\x02" * 128), 4) == OK + OK
        finally:
            ser.close()
        assert sim.flash[:512] == b"\x02" * 512
    assert pts is not None


def test_reopening_the_port_works_and_stop_cleans_up() -> None:
    before = {t.name for t in threading.enumerate()}
    sim = SimulatedArduino()
    path = sim.start()
    for _ in range(3):
        ser = serial.Serial(path, 115200, timeout=2)
        try:
            assert ask(ser, SYNC, 2) == OK
        finally:
            ser.close()
    assert sim.running
    sim.stop()
    sim.stop()  # idempotent
    assert not os.path.exists(path)
    assert not sim.running
    assert {t.name for t in threading.enumerate()} <= before | {"MainThread"}
    with pytest.raises(RuntimeError, match="start"):
        _ = sim.tty_path


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
        ("sim:toaster", "sim:arduino"),
    ],
)
def test_bad_sim_urls(url: str, why: str) -> None:
    with pytest.raises(DeviceURLError, match=why):
        validate(url)


def test_good_sim_url_validates() -> None:
    validate("sim:arduino?baud=57600&part=m168&fault=slow=2,verify@0x10&sync_timeout=1")


def test_sim_arduino_device_is_leased_under_its_tty() -> None:
    """An stk500: URL on the simulator's tty finds it busy while the sim:arduino handle lives."""
    from labruntime.drivers import DeviceBusyError, open_device

    with open_device("sim:arduino?baud=1000000") as dev:
        with pytest.raises(DeviceBusyError, match=r"busy: held by this process"):
            open_device(f"stk500:{dev.port}?reset=none")
        assert dev.lease is not None and dev.lease.key == os.path.realpath(dev.port)
    assert not dev.lease.held  # released on close
