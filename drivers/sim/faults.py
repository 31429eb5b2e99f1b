"""Faults a simulated Arduino can be told to show, parsed from ``fault=`` / ``--fault``.

Grammar (several faults joined by commas, or given as a list)::

    nosync            the bootloader never answers (a dead board, wrong port or baud rate)
    verify@ADDR       flash byte ADDR (decimal or 0x hex) is stored inverted, so read-back
                      differs there
    disconnect@PCT    when PCT % of the pages have been written the board vanishes (the pty
                      master is closed, the host gets an I/O error); fires once, then the board
                      comes back on the same tty path. The page count is the image's when the
                      programmer announces it (the sim:arduino driver does), else the part's
                      application flash.
    slow=N            the line runs N times slower than the baud rate (N > 0, may be a float)
    noleave           LEAVE_PROGMODE is lost: no reply, and the board stays in programming mode
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import DeviceURLError

__all__ = ["FAULT_GRAMMAR", "Faults", "parse_faults"]

FAULT_GRAMMAR = (
    "nosync | verify@ADDR | disconnect@PERCENT | slow=FACTOR | noleave (comma-separated)"
)


@dataclass(frozen=True)
class Faults:
    nosync: bool = False
    verify_at: int | None = None
    disconnect_at: float | None = None
    slow: float = 1.0
    noleave: bool = False

    def to_list(self) -> list[str]:
        out = []
        if self.nosync:
            out.append("nosync")
        if self.verify_at is not None:
            out.append(f"verify@0x{self.verify_at:X}")
        if self.disconnect_at is not None:
            out.append(f"disconnect@{self.disconnect_at:g}")
        if self.slow != 1.0:
            out.append(f"slow={self.slow:g}")
        if self.noleave:
            out.append("noleave")
        return out


def _bad(text: str, problem: str) -> DeviceURLError:
    return DeviceURLError(f"bad simulator fault {text!r}: {problem}. Grammar: {FAULT_GRAMMAR}")


def parse_faults(spec: str | Iterable[str] | Faults | None) -> Faults:
    """Parse fault specifications; DeviceURLError (showing the grammar) on a bad one."""
    if spec is None:
        return Faults()
    if isinstance(spec, Faults):
        return spec
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    values: dict[str, object] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        low = item.lower()
        if low == "nosync":
            values["nosync"] = True
        elif low == "noleave":
            values["noleave"] = True
        elif low.startswith("verify@"):
            try:
                address = int(low[7:], 0)
            except ValueError:
                raise _bad(item, "the address must be an integer such as 0x1234") from None
            if address < 0:
                raise _bad(item, "the address must not be negative")
            values["verify_at"] = address
        elif low.startswith("disconnect@"):
            try:
                pct = float(low[11:].rstrip("%"))
            except ValueError:
                raise _bad(item, "the percentage must be a number from 0 to 100") from None
            if not 0 <= pct <= 100:
                raise _bad(item, "the percentage must be from 0 to 100")
            values["disconnect_at"] = pct
        elif low.startswith("slow=") or low.startswith("slow@"):
            try:
                factor = float(low[5:])
            except ValueError:
                raise _bad(item, "the factor must be a number such as 4") from None
            if not 0 < factor <= 1000:
                raise _bad(item, "the factor must be above 0 and at most 1000")
            values["slow"] = factor
        else:
            raise _bad(item, "unknown fault")
    return Faults(**values)  # type: ignore[arg-type]
