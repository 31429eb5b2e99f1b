"""The real avrdude (-c arduino) programs, verifies and reads back the simulated board."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from labruntime.drivers.image import FirmwareImage, load_image
from labruntime.drivers.sim.arduino import SimulatedArduino

AVRDUDE = shutil.which("avrdude")
pytestmark = pytest.mark.skipif(
    AVRDUDE is None,
    reason="avrdude is not installed (apt-get install avrdude); CI installs it",
)


def avrdude(tty: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [AVRDUDE or "avrdude", "-c", "arduino", "-p", "m328p", "-P", tty, "-b", "115200"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_avrdude_writes_verifies_and_reads_back(tmp_path) -> None:
    img = FirmwareImage(os.urandom(5000), 0x80, "random")
    hexfile = tmp_path / "fw.hex"
    hexfile.write_text(img.to_ihex())
    readback = tmp_path / "read.bin"
    with SimulatedArduino() as board:
        done = avrdude(board.tty_path, "-U", f"flash:w:{hexfile}:i")
        assert done.returncode == 0, done.stderr
        assert "5000 bytes of flash verified" in done.stderr
        assert board.flash[0x80 : 0x80 + 5000] == img.data
        done = avrdude(board.tty_path, "-U", f"flash:r:{readback}:r")
        assert done.returncode == 0, done.stderr
    data = load_image(readback).data
    assert data[0x80 : 0x80 + 5000] == img.data
    assert len(data) <= 32768


def test_avrdude_sees_a_verify_fault(tmp_path) -> None:
    hexfile = tmp_path / "fw.hex"
    hexfile.write_text(FirmwareImage(bytes(range(256)) * 4).to_ihex())
    with SimulatedArduino(faults="verify@0x200") as board:
        done = avrdude(board.tty_path, "-U", f"flash:w:{hexfile}:i")
    assert done.returncode != 0
    assert "0x0200" in done.stderr or "0x200" in done.stderr, done.stderr


def test_avrdude_reads_the_signature_of_another_part() -> None:
    with SimulatedArduino(part="atmega168") as board:
        done = avrdude(board.tty_path)
    assert done.returncode != 0
    assert "1e9406" in done.stderr.lower(), done.stderr
