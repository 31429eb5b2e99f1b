"""Benchmark: program a 28 KB image into the faithful simulated Uno (Optiboot 4.4) at 115200 baud.

Issue 13's figure: the native STK500 driver against avrdude on the same simulated board, which
has Optiboot's timing (65 ms start-up, 375 ms LED flashes, 3-byte UART, 4.5 ms page writes).
For each run it prints the time, the bytes the protocol moved in both directions (counted by
the simulator), the floor for that run (every byte at 10 bits / baud, plus 4.5 ms per page
written, during which the chip reads nothing), and the ratio time / floor; then native vs
avrdude, and each one's estimate (``estimate_seconds``, which ``require_time`` uses) next to
its time.

    .venv/bin/python bench/bench_program.py [--size 28672] [--baud 115200] [--runs 1]

With ``--nosync`` it also times how long each gives up on a board that never answers
(avrdude needs about a minute for that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from labruntime.drivers import open_device
from labruntime.drivers.errors import DeviceTimeoutError
from labruntime.drivers.image import FirmwareImage
from labruntime.drivers.sim.arduino import SimulatedArduino
from labruntime.drivers.sim.bootloader import PAGE_OPERATION


def line(label: str, seconds: float, moved: int, pages: int, baud: int) -> str:
    wire = moved * 10 / baud
    floor = wire + pages * PAGE_OPERATION
    return (
        f"{label:<30} {seconds:7.3f} s   moved {moved:6d} B ({wire:6.3f} s on the line)"
        f" + {pages:3d} page writes = floor {floor:6.3f} s   ratio {seconds / floor:5.3f}"
    )


class Counter:
    """Bytes moved and pages written on ``board`` since the last call."""

    def __init__(self, board: SimulatedArduino) -> None:
        self.board = board
        self.moved, self.pages = self._now()

    def _now(self) -> tuple[int, int]:
        return self.board.bytes_received + self.board.bytes_sent, self.board.pages_written

    def delta(self) -> tuple[int, int]:
        moved, pages = self._now()
        out = (moved - self.moved, pages - self.pages)
        self.moved, self.pages = moved, pages
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28 * 1024, help="image bytes (28672)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nosync", action="store_true", help="also time giving up on no answer")
    args = parser.parse_args()
    img = FirmwareImage(os.urandom(args.size), 0, "bench")
    print(
        f"image: {args.size} bytes at 0x0, atmega328p, {args.baud} baud, write + verify, on the "
        "faithful simulated Uno (Optiboot 4.4 timing)"
    )
    native: list[float] = []
    with open_device(f"sim:arduino?baud={args.baud}") as dev:  # the Uno's DTR reset wired
        board = dev.board
        print(f"native estimate_seconds(image): {dev.estimate_seconds(img):.3f} s")
        count = Counter(board)
        for run in range(args.runs):
            result = dev.program(img)
            assert board.flash[: args.size] == img.data
            native.append(result.seconds)
            print(line(f"native stk500 (run {run + 1})", result.seconds, *count.delta(), args.baud))
    avrdude = shutil.which("avrdude")
    if avrdude is None:
        print("avrdude: not installed (apt-get install avrdude); skipped")
        return
    tool: list[float] = []
    with SimulatedArduino(baudrate=args.baud) as board, tempfile.TemporaryDirectory() as tmp:
        hexfile = Path(tmp) / "bench.hex"
        hexfile.write_text(img.to_ihex())
        command = [avrdude, "-c", "arduino", "-p", "m328p", "-P", board.tty_path]
        command += ["-b", str(args.baud), "-U", f"flash:w:{hexfile}:i"]
        tool_args = f"-c arduino -p m328p -P {{port}} -b {args.baud} -U flash:w:{{image}}:i"
        with open_device(f"command:avrdude?port={board.tty_path}&args={tool_args}") as tool_dev:
            print(
                f"command:avrdude estimate_seconds(image): {tool_dev.estimate_seconds(img):.3f} s"
            )
        count = Counter(board)
        for run in range(args.runs):
            board.erase()
            count.delta()
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            seconds = time.monotonic() - started
            if done.returncode != 0:
                print("avrdude failed:\n" + done.stderr[-2000:])
                return
            tool.append(seconds)
            print(line(f"avrdude 7.x (run {run + 1})", seconds, *count.delta(), args.baud))
    print(
        "(the floor leaves out the bootloader's start-up after a reset: 65 ms + 375 ms of LED "
        "flashes before it reads the first GET_SYNC)"
    )
    print(
        f"native / avrdude: {statistics.median(native) / statistics.median(tool):.2f}x "
        "(medians; avrdude's time includes its process start, its 300 ms DTR pause and a "
        "250 ms drain before the first sync)"
    )
    if args.nosync:
        bench_nosync(args.baud)


def bench_nosync(baud: int) -> None:
    with SimulatedArduino(baudrate=baud, faults="nosync") as board:
        with open_device(f"stk500:{board.tty_path}?baudrate={baud}") as dev:
            started = time.monotonic()
            try:
                dev.program(FirmwareImage(b"\x00" * 128))
            except DeviceTimeoutError:
                pass
            print(
                f"native stk500 gives up on a silent board after {time.monotonic() - started:.2f} s"
            )
        avrdude = shutil.which("avrdude")
        if avrdude is None:
            return
        command = [avrdude, "-c", "arduino", "-p", "m328p", "-P", board.tty_path, "-b", str(baud)]
        started = time.monotonic()
        subprocess.run(command, capture_output=True, check=False)
        print(f"avrdude gives up on a silent board after {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    main()
