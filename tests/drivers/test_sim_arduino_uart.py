"""The UART timing model of the simulated board (pure arithmetic, no I/O)."""

from __future__ import annotations

import pytest

from labruntime.drivers.sim.uart import UartLine

BT = 0.001  # one byte per millisecond


def test_bytes_arrive_one_byte_time_apart_and_queue_behind_each_other() -> None:
    line = UartLine(BT)
    line.receive(b"abc", 10.0)
    assert line.arrival(0) == pytest.approx(10.001)
    assert line.arrival(2) == pytest.approx(10.003)
    line.receive(b"de", 10.0015)  # written while "abc" is still on the wire
    assert line.arrival(3) == pytest.approx(10.004)
    line.receive(b"f", 20.0)  # the line was idle: starts at once
    assert line.arrival(5) == pytest.approx(20.001)


def test_consuming_keeps_the_timing_of_what_is_left() -> None:
    line = UartLine(BT)
    line.receive(b"abcd", 1.0)
    line.receive(b"ef", 1.0)
    line.consume(3)
    assert bytes(line.buffer) == b"def"
    assert line.arrival(0) == pytest.approx(1.004)
    assert line.arrival(2) == pytest.approx(1.006)
    line.consume(2)
    assert line.arrival(0) == pytest.approx(1.006)
    line.consume(1)
    assert not line.buffer
    with pytest.raises(IndexError):
        line.arrival(0)
    line.receive(b"g", 5.0)
    assert line.arrival(0) == pytest.approx(5.001)


def test_transmit_is_independent_of_receive_and_serialised() -> None:
    line = UartLine(BT)
    assert line.transmit(2.0, 10) == pytest.approx(2.010)
    assert line.transmit(2.005, 2) == pytest.approx(2.012)  # waits for the first reply
    assert line.transmit(3.0, 1) == pytest.approx(3.001)


def test_clear_and_bad_byte_time() -> None:
    line = UartLine(BT)
    line.receive(b"xyz", 0.0)
    line.clear()
    assert not line.buffer
    with pytest.raises(ValueError, match="positive"):
        UartLine(0)
