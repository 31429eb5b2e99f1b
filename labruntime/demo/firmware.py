"""Firmware the demo lab accepts: the bundled examples and a student's uploaded Intel HEX file.

Everything is checked here, in the web request, before a task is queued: a bad file gets a
:class:`FirmwareError` whose message names the line (from the driver's HEX parser), never a 500.
The task receives the HEX text (JSON carries it; a 32 KB image is about 90 KB of text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labruntime.drivers import ImageError
from labruntime.drivers.image import FirmwareImage, parse_ihex
from labruntime.drivers.parts import get_part

__all__ = ["EXAMPLES", "PART", "Firmware", "FirmwareError", "example", "from_upload"]

#: The simulated board's part (the demo's WEBLAB_DEVICES says part=atmega328p).
PART = get_part("atmega328p")
MAX_UPLOAD = 256 * 1024  # bytes of HEX text; a full ATmega328P image is about 90 KB
_BLINK = Path(__file__).with_name("blink.hex")
_BLINK_SERIAL = Path(__file__).with_name("blink_serial.hex")  # built from src/blink_serial.c
_PATTERN_SIZE = 8 * 1024


class FirmwareError(ValueError):
    """The chosen or uploaded firmware cannot be programmed; the message says why."""


@dataclass(frozen=True)
class Firmware:
    """A checked image: its HEX text (what the task gets), a name to show and its size."""

    hex_text: str
    source: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "size": self.size}


def _pattern_hex() -> str:
    """8 KB of a counting pattern: not a program, it only fills flash so progress shows."""
    data = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(_PATTERN_SIZE))
    return FirmwareImage(data, 0, "pattern").to_ihex()


#: name -> (label shown to the student, a function giving the HEX text)
EXAMPLES = {
    "blink": ("Blink (bundled example, 20 bytes)", lambda: _BLINK.read_text("ascii")),
    "blink_serial": (
        "Blink and print (LED 13 every 0.5 s, and a line on the serial port each time)",
        lambda: _BLINK_SERIAL.read_text("ascii"),
    ),
    "pattern": ("Fill pattern, 8 KB (not a program: long enough to watch or cancel)", _pattern_hex),
}


def _check(text: str, source: str) -> Firmware:
    try:
        image = parse_ihex(text, source)
        image.check_fits(PART)
    except ImageError as error:
        raise FirmwareError(str(error)) from None
    return Firmware(text, source, image.size)


def example(name: str) -> Firmware:
    """One of :data:`EXAMPLES`; FirmwareError naming the choices for an unknown name."""
    if name not in EXAMPLES:
        raise FirmwareError(f"no bundled example {name!r}; choose one of {', '.join(EXAMPLES)}")
    label, text = EXAMPLES[name]
    return _check(text(), f"{name}.hex")


def from_upload(filename: str | None, content: bytes) -> Firmware:
    """A student's upload, checked line by line (FirmwareError names the file and the line)."""
    name = Path(filename or "upload.hex").name or "upload.hex"
    if not content.strip():
        raise FirmwareError(f"{name} is empty: choose an Intel HEX file (.hex) built for the board")
    if len(content) > MAX_UPLOAD:
        raise FirmwareError(
            f"{name} is {len(content)} bytes; an Intel HEX file for the {PART.name} is under "
            f"{MAX_UPLOAD // 1024} KB: is it the right file?"
        )
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise FirmwareError(
            f"{name} line {line}: not text (a byte outside ASCII); upload the .hex file your "
            "compiler produced, not an .elf or .bin"
        ) from None
    return _check(text, name)
