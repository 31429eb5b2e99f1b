"""The simulated chip's UART: when bytes arrive and leave, and the receive FIFO that overruns.

A host writes to a pty instantly; a real line moves one byte every ``10 / baud`` seconds (start
bit, 8 data bits, stop bit), in both directions independently (full duplex).

:class:`UartRx` gives each byte the host wrote the time it would have finished arriving. An
ATmega's USART holds at most three received bytes the program has not read yet: two in its
receive FIFO and one in the shift register. When a fourth arrives, it is shifted in over the
one waiting there (a data overrun): the two oldest and the newest survive. The program reads
bytes as fast as they come while it waits for one, so the limit only bites on bytes that
arrived while it was doing something else; :meth:`UartRx.overrun` applies it to those.

:class:`UartTx` schedules the bytes the program writes: its data register and the shift
register let the program write two bytes ahead; after that it waits for the line::

    rx = UartRx(byte_time=10 / 115200)
    rx.receive(chunk, time.monotonic())       # queued behind the bytes still "on the wire"
    rx.overrun(until=t)                       # the program was away until t
    byte = rx.take()                          # RxByte(value, arrival, framing_error)
    tx = UartTx(byte_time=10 / 115200)
    go_on, done = tx.send(t, 3)               # the program goes on at go_on; line idle at done
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["RxByte", "UartRx", "UartTx"]


@dataclass(frozen=True)
class RxByte:
    value: int
    #: when its stop bit has been received (monotonic seconds)
    arrival: float
    #: received at a rate that does not match: the stop bit was not where it belongs
    framing_error: bool = False


class UartRx:
    """Received bytes with their arrival times, and the three-byte limit of the receiver."""

    #: bytes the receiver holds for a program that is not reading (FIFO 2 + shift register 1)
    DEPTH = 3

    def __init__(self, byte_time: float) -> None:
        if byte_time <= 0:
            raise ValueError(f"byte_time must be positive, got {byte_time!r}")
        self.byte_time = byte_time
        self.pending: deque[RxByte] = deque()
        self.lost = 0
        self._clock = 0.0

    def receive(self, data: bytes, now: float, *, framing_error: bool = False) -> None:
        """Bytes the host wrote at ``now``: each arrives one byte time after the previous one."""
        t = max(self._clock, now)
        for value in data:
            t += self.byte_time
            self.pending.append(RxByte(value, t, framing_error))
        self._clock = t

    def drop_before(self, t: float) -> int:
        """Forget bytes that arrived before ``t`` (the receiver was off); how many."""
        dropped = 0
        while self.pending and self.pending[0].arrival < t:
            self.pending.popleft()
            dropped += 1
        self.lost += dropped
        return dropped

    def overrun(self, until: float) -> int:
        """Apply the receiver's depth to the bytes arrived by ``until``; how many were lost."""
        arrived = [b for b in self.pending if b.arrival <= until]
        if len(arrived) <= self.DEPTH:
            return 0
        kept = [*arrived[: self.DEPTH - 1], arrived[-1]]
        later = list(self.pending)[len(arrived) :]
        self.pending = deque(kept + later)
        lost = len(arrived) - len(kept)
        self.lost += lost
        return lost

    def peek(self) -> RxByte | None:
        return self.pending[0] if self.pending else None

    def take(self) -> RxByte:
        return self.pending.popleft()

    def clear(self) -> None:
        """Forget everything received (a reset, or the program stopped reading for good)."""
        self.pending.clear()


class UartTx:
    """The transmit side: when written bytes leave, and when the writer may go on."""

    def __init__(self, byte_time: float) -> None:
        if byte_time <= 0:
            raise ValueError(f"byte_time must be positive, got {byte_time!r}")
        self.byte_time = byte_time
        self._clock = 0.0

    def send(self, start: float, n: int) -> tuple[float, float]:
        """``n`` bytes written from ``start``: (when the writer goes on, when the last is out)."""
        first = max(self._clock, start)
        done = first + n * self.byte_time
        self._clock = done
        # the data register and the shift register take two bytes without waiting
        return max(start, done - 2 * self.byte_time), done

    def clear(self) -> None:
        self._clock = 0.0
