"""Pins of the AVR twin: their names (port pins, Arduino Uno numbers) and their history.

A pin is named by its port and bit (``"PB5"``, ``"B5"``) or by its number on an Arduino Uno
(``13``, ``"D13"``, ``"A0"``); :func:`parse_pin` turns either into ``("B", 5)``. A
:class:`PinEdge` is one change of a pin's level, stamped in simulated time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PinEdge", "parse_pin"]

#: Arduino Uno pin numbers -> ATmega328P port pins
_ARDUINO_PINS = {
    **{str(n): ("D", n) for n in range(8)},
    **{str(n): ("B", n - 8) for n in range(8, 14)},
    **{f"A{n}": ("C", n) for n in range(6)},
}
_PIN_RE = re.compile(r"^P?([A-L])([0-7])$", re.IGNORECASE)


def parse_pin(name: str | int) -> tuple[str, int]:
    """``"PB5"``, ``"B5"``, ``13``, ``"D13"`` or ``"A0"`` (Uno numbering) -> ``("B", 5)``."""
    text = str(name).strip().upper()
    if text.startswith("D") and text[1:].isdigit():
        text = text[1:]
    if text in _ARDUINO_PINS:
        return _ARDUINO_PINS[text]
    match = _PIN_RE.match(text)
    if not match:
        raise KeyError(
            f"{name!r} is not a pin: give a port pin (PB5) or an Arduino Uno pin (13, D13, A0)"
        )
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class PinEdge:
    """A pin's level changed at ``seconds`` of simulated time (``cycle`` CPU cycles)."""

    cycle: int
    seconds: float
    level: bool
