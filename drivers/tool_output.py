"""Progress and last lines from an external programming tool's output stream.

:class:`ToolOutput` is fed raw text as it arrives and recognises, in this order:

* avrdude on a terminal: ``\\rWriting | ########          | 40% 0.32s``;
* avrdude on a pipe (no terminal): ``Writing | `` then one ``#`` per 2 %, then ``| 100% 0.32s``;
* esptool: ``Writing at 0x00010000... (40 %)``;
* anything else printing a percentage: ``... 40% ...`` (the last one on the line).

avrdude's ``Reading`` bar after a ``Writing`` bar is its verification, reported as stage
``verify``. Lines are split on ``\\n``; within a line, ``\\r`` rewrites start a new segment and
only the final segment is kept for the tail used in error messages.
"""

from __future__ import annotations

import re
from collections import deque

from .operations import Progress

__all__ = ["ToolOutput"]

_AVRDUDE_TTY = re.compile(r"(Reading|Writing)\s*\|\s*#*\s*\|\s*(\d{1,3})%")
_AVRDUDE_PIPE = re.compile(r"(Reading|Writing) \| (#*)$")
_ESPTOOL = re.compile(r"Writing at 0x[0-9a-fA-F]+\.*\s*\(\s*(\d{1,3})\s*%\s*\)")
_SEPARATORS = re.compile(r"(\r|\n)")
_GENERIC = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


class ToolOutput:
    """Stateful parser of a tool's combined stdout/stderr."""

    def __init__(self, tail_lines: int = 12) -> None:
        self._partial = ""
        self._segment = ""
        self._after_cr = False  # segments after a \r are terminal rewrites, not pipe output
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._last: tuple[str, int] | None = None
        self._wrote = False

    def feed(self, text: str) -> list[Progress]:
        """Consume ``text``; return the new progress events it completes (deduplicated)."""
        events: list[Progress] = []
        for piece in _SEPARATORS.split(text):
            if piece in ("\r", "\n"):
                self._end_segment(events, newline=piece == "\n")
            else:
                self._partial += piece
        if self._partial:  # an unterminated segment: only avrdude's streaming '#'s are final
            self._parse(self._partial, events, partial=True)
        return events

    def _end_segment(self, events: list[Progress], *, newline: bool) -> None:
        segment, self._partial = self._partial, ""
        self._parse(segment, events)
        self._after_cr = not newline
        if segment.strip():
            self._segment = segment.strip()
        if newline:
            if self._segment:
                self._tail.append(self._segment)
            self._segment = ""

    def _stage(self, word: str) -> str:
        if word == "Writing":
            self._wrote = True
            return "write"
        return "verify" if self._wrote else "read"

    def _parse(self, segment: str, events: list[Progress], *, partial: bool = False) -> None:
        found: tuple[str, int] | None = None
        if partial:
            if not self._after_cr and (m := _AVRDUDE_PIPE.search(segment)):
                found = (self._stage(m.group(1)), 2 * len(m.group(2)))
        elif m := _AVRDUDE_TTY.search(segment):
            found = (self._stage(m.group(1)), int(m.group(2)))
        elif not self._after_cr and (m := _AVRDUDE_PIPE.search(segment)):
            found = (self._stage(m.group(1)), 2 * len(m.group(2)))
        elif m := _ESPTOOL.search(segment):
            self._wrote = True
            found = ("write", int(m.group(1)))
        else:
            matches = _GENERIC.findall(segment)
            if matches:
                found = ("run", int(float(matches[-1])))
        if found is None:
            return
        stage, percent = found[0], max(0, min(100, found[1]))
        if (stage, percent) != self._last:
            self._last = (stage, percent)
            events.append(Progress(stage, percent, 100))

    def finish(self) -> None:
        """Flush the last unterminated line into the tail."""
        if self._partial or self._segment:
            self._end_segment([], newline=True)

    @property
    def tail(self) -> list[str]:
        """The last lines of output (for error messages)."""
        return list(self._tail)
