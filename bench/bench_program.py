"""Benchmark: program a 30 KB image into the simulated Arduino at 115200 baud.

Prints, for the native STK500 driver and for avrdude on the same simulated board: the time,
the bytes the protocol moved in both directions (counted by the simulator), the line-rate
limit for those bytes (bytes x 10 bits / baud) and the ratio time / limit.

    .venv/bin/python bench/bench_program.py [--size 30720] [--baud 115200] [--runs 1]

With ``--nosync`` it also times how long each gives up on a board that never answers
(avrdude needs about a minute for that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from labruntime.drivers import open_device
from labruntime.drivers.errors import DeviceTimeoutError
from labruntime.drivers.image import FirmwareImage
from labruntime.drivers.sim.arduino import SimulatedArduino


def line(label: str, seconds: float, moved: int, baud: int) -> str:
    limit = moved * 10 / baud
    return (
        f"{label:<26} {seconds:7.3f} s   moved {moved:6d} B   line-rate limit {limit:6.3f} s"
        f"   ratio {seconds / limit:5.3f}"
    )


def counters(board: SimulatedArduino) -> int:
    return board.bytes_received + board.bytes_sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30 * 1024, help="image bytes (30720)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nosync", action="store_true", help="also time giving up on no answer")
    args = parser.parse_args()
    img = FirmwareImage(os.urandom(args.size), 0, "bench")
    print(f"image: {args.size} bytes at 0x0, atmega328p, {args.baud} baud, write + verify")
    with SimulatedArduino(baudrate=args.baud) as board:
        url = f"stk500:{board.tty_path}?baudrate={args.baud}&reset=none"
        with open_device(url) as dev:
            print(f"estimate_seconds(image): {dev.estimate_seconds(img):.3f} s")
            for run in range(args.runs):
                before = counters(board)
                result = dev.program(img)
                moved = counters(board) - before
                assert board.flash[: args.size] == img.data
                print(line(f"native stk500 (run {run + 1})", result.seconds, moved, args.baud))
        avrdude = shutil.which("avrdude")
        if avrdude is None:
            print("avrdude: not installed (apt-get install avrdude); skipped")
            return
        with tempfile.TemporaryDirectory() as tmp:
            hexfile = Path(tmp) / "bench.hex"
            hexfile.write_text(img.to_ihex())
            command = [avrdude, "-c", "arduino", "-p", "m328p", "-P", board.tty_path]
            command += ["-b", str(args.baud), "-U", f"flash:w:{hexfile}:i"]
            for run in range(args.runs):
                board.bootloader.flash[:] = b"\xff" * len(board.bootloader.flash)
                before = counters(board)
                started = time.monotonic()
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                seconds = time.monotonic() - started
                if done.returncode != 0:
                    print("avrdude failed:\n" + done.stderr[-2000:])
                    return
                moved = counters(board) - before
                print(line(f"avrdude 7.x (run {run + 1})", seconds, moved, args.baud))
        print("(avrdude's time includes its process start and its 300 ms DTR reset pause)")
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
