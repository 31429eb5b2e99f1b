"""Timing model of a full-duplex UART line, for the simulated boards.

A host writes to a pty instantly; a real UART moves one byte every ``10 / baud`` seconds (start
bit, 8 data bits, stop bit). :class:`UartLine` keeps the bytes received from the host together
with the time each one *would* have finished arriving, and schedules replies on the transmit
side, which runs independently (full duplex)::

    line = UartLine(byte_time=10 / 115200)
    line.receive(chunk, time.monotonic())     # bytes queue behind those still "on the wire"
    ready = line.arrival(n - 1)               # when a command of n bytes is complete
    line.consume(n)
    done = line.transmit(ready, len(reply))   # when the reply's last byte has left
"""

from __future__ import annotations

__all__ = ["UartLine"]


class UartLine:
    """Received bytes with their simulated arrival times, and the transmit clock."""

    def __init__(self, byte_time: float) -> None:
        if byte_time <= 0:
            raise ValueError(f"byte_time must be positive, got {byte_time!r}")
        self.byte_time = byte_time
        self.buffer = bytearray()
        # (buffer index of a chunk's first byte, when that chunk started arriving); a partly
        # consumed chunk keeps its start with a negative index, so its timing is unchanged
        self._marks: list[tuple[int, float]] = []
        self._rx_clock = 0.0
        self._tx_clock = 0.0

    def receive(self, chunk: bytes, now: float) -> None:
        """Bytes the host wrote at ``now``; they arrive one ``byte_time`` after another."""
        if not chunk:
            return
        start = max(self._rx_clock, now)
        self._marks.append((len(self.buffer), start))
        self.buffer += chunk
        self._rx_clock = start + len(chunk) * self.byte_time

    def arrival(self, index: int) -> float:
        """When ``buffer[index]`` has completely arrived."""
        if not 0 <= index < len(self.buffer):
            raise IndexError(f"no byte {index} in a buffer of {len(self.buffer)}")
        first, start = self._marks[0]
        for m_first, m_start in self._marks:
            if m_first > index:
                break
            first, start = m_first, m_start
        return start + (index - first + 1) * self.byte_time

    def consume(self, n: int) -> None:
        """Drop ``n`` bytes from the front of the buffer."""
        total = len(self.buffer)
        del self.buffer[:n]
        marks = self._marks
        kept: list[tuple[int, float]] = []
        for i, (first, start) in enumerate(marks):
            end = marks[i + 1][0] if i + 1 < len(marks) else total
            if end > n:  # some of this chunk is still in the buffer
                kept.append((first - n, start))
        self._marks = kept

    def clear(self) -> None:
        """Forget everything received (a reset or a new connection)."""
        self.buffer.clear()
        self._marks = []

    def transmit(self, ready: float, n: int) -> float:
        """Schedule ``n`` reply bytes starting no earlier than ``ready``; when they are out."""
        self._tx_clock = max(self._tx_clock, ready) + n * self.byte_time
        return self._tx_clock
