"""The UART model of the simulated board (pure arithmetic, no I/O)."""

from __future__ import annotations

import pytest

from labruntime.drivers.sim.uart import UartRx, UartTx

BT = 0.001  # one byte per millisecond


def test_bytes_arrive_one_byte_time_apart_and_queue_behind_each_other() -> None:
    rx = UartRx(BT)
    rx.receive(b"ab", 10.0)
    rx.receive(b"c", 10.0005)  # written while "b" is still on the wire
    assert [(b.value, b.arrival) for b in rx.pending] == [
        (ord("a"), pytest.approx(10.001)),
        (ord("b"), pytest.approx(10.002)),
        (ord("c"), pytest.approx(10.003)),
    ]
    rx.receive(b"d", 20.0)  # the line was idle
    assert rx.pending[-1].arrival == pytest.approx(20.001)


def test_bytes_sent_while_the_receiver_is_off_are_lost() -> None:
    rx = UartRx(BT)
    rx.receive(b"abcd", 0.0)
    assert rx.drop_before(0.0025) == 2
    assert [b.value for b in rx.pending] == [ord("c"), ord("d")]
    assert rx.lost == 2


def test_the_receiver_holds_three_bytes_the_two_oldest_and_the_newest() -> None:
    rx = UartRx(BT)
    rx.receive(b"0123456", 0.0)  # arrive at 1..7 ms
    assert rx.overrun(until=0.0055) == 2  # 0..4 had arrived: 2 and 3 were overwritten
    assert bytes(b.value for b in rx.pending) == b"01456"
    assert rx.overrun(until=0.0055) == 0  # applied once
    assert rx.take().value == ord("0") and rx.peek() is not None
    rx.clear()
    assert rx.peek() is None and rx.lost == 2


def test_three_bytes_fit() -> None:
    rx = UartRx(BT)
    rx.receive(b"\x30\x20\x30", 0.0)
    assert rx.overrun(until=1.0) == 0 and len(rx.pending) == 3
    assert not any(b.framing_error for b in rx.pending)
    rx.receive(b"x", 2.0, framing_error=True)
    assert rx.pending[-1].framing_error


def test_the_writer_goes_on_while_two_bytes_fit_in_the_transmitter() -> None:
    tx = UartTx(BT)
    assert tx.send(1.0, 2) == (1.0, pytest.approx(1.002))  # no wait for two bytes
    go_on, done = tx.send(1.0, 10)  # queued behind them
    assert done == pytest.approx(1.012) and go_on == pytest.approx(1.010)
    tx.clear()
    assert tx.send(5.0, 1) == (5.0, pytest.approx(5.001))


def test_byte_time_must_be_positive() -> None:
    for cls in (UartRx, UartTx):
        with pytest.raises(ValueError, match="positive"):
            cls(0)
