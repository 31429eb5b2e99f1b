"""ToolOutput: progress from avrdude/esptool/generic output, whatever the chunking."""

from __future__ import annotations

import pytest

from labruntime.drivers.tool_output import ToolOutput

AVRDUDE_TTY = (
    "avrdude: AVR device initialized and ready to accept instructions\n\n"
    + "".join(f"\rWriting | {('#' * (p // 2)).ljust(50)} | {p}% 0.{p:02d}s" for p in (0, 40, 100))
    + "\n\navrdude: 1024 bytes of flash written\n\n"
    + "".join(f"\rReading | {('#' * (p // 2)).ljust(50)} | {p}% 0.{p:02d}s" for p in (0, 50, 100))
    + "\n\navrdude: 1024 bytes of flash verified\n"
)
AVRDUDE_PIPE = (
    "avrdude: reading input file x.hex\n"
    "\nWriting | " + "#" * 50 + " | 100% 0.30s\n\n"
    "\nReading | " + "#" * 50 + " | 100% 0.20s\n\n"
    "avrdude: 1024 bytes of flash verified\n"
)
ESPTOOL = "".join(f"Writing at 0x{0x1000 + p:08x}... ({p} %)\n" for p in (0, 33, 66, 100))


def run(text: str, chunk: int) -> tuple[list[tuple[str, int]], list[str]]:
    parser = ToolOutput()
    events = []
    for start in range(0, len(text), chunk):
        events += [(e.stage, e.done) for e in parser.feed(text[start : start + chunk])]
    parser.finish()
    return events, parser.tail


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
def test_avrdude_terminal_bar(chunk: int) -> None:
    events, tail = run(AVRDUDE_TTY, chunk)
    assert events == [
        ("write", 0),
        ("write", 40),
        ("write", 100),
        ("verify", 0),
        ("verify", 50),
        ("verify", 100),
    ]
    assert tail[-1] == "avrdude: 1024 bytes of flash verified"
    assert tail[1].startswith("Writing | ####") and tail[1].endswith("100% 0.100s")


@pytest.mark.parametrize("chunk", [1, 5, 100_000])
def test_avrdude_pipe_hashes(chunk: int) -> None:
    events, tail = run(AVRDUDE_PIPE, chunk)
    writes = [done for stage, done in events if stage == "write"]
    verifies = [done for stage, done in events if stage == "verify"]
    assert writes[-1] == 100 and verifies[-1] == 100
    assert writes == sorted(writes) and verifies == sorted(verifies)
    if chunk == 1:
        assert writes == list(range(0, 101, 2))  # 0 at the header, then 2 % per "#"
    assert "avrdude: 1024 bytes of flash verified" in tail


@pytest.mark.parametrize("chunk", [1, 4, 100_000])
def test_esptool_percentages(chunk: int) -> None:
    events, tail = run(ESPTOOL, chunk)
    assert events == [("write", 0), ("write", 33), ("write", 66), ("write", 100)]
    assert len(tail) == 4


def test_generic_percentages_and_tail_length() -> None:
    text = "".join(f"step {i}: 12.5% then {i * 10}%\n" for i in range(1, 11)) + "no newline"
    events, tail = run(text, 9)
    assert events[-1] == ("run", 100)
    assert ("run", 12) not in events  # the last percentage on a line wins
    assert len(tail) == 12 - 1 and tail[-1] == "no newline"  # 10 lines + the unterminated one
    parser = ToolOutput(tail_lines=3)
    parser.feed("a\nb\nc\nd\n")
    assert parser.tail == ["b", "c", "d"]


def test_lines_without_progress_give_no_events() -> None:
    events, tail = run("avrdude: Device signature = 0x1e950f\nok\n", 4)
    assert events == [] and tail == ["avrdude: Device signature = 0x1e950f", "ok"]
