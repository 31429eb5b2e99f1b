"""Firmware images: Intel HEX records and checksums, raw binary, sizes, pages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labruntime.drivers.errors import ImageError
from labruntime.drivers.image import FirmwareImage, load_image, parse_ihex
from labruntime.drivers.parts import get_part


def rec(addr: int, rtype: int, data: bytes) -> str:
    body = bytes((len(data), addr >> 8, addr & 0xFF, rtype)) + data
    return ":" + (body + bytes(((-sum(body)) & 0xFF,))).hex().upper()


EOF_LINE = ":00000001FF"


def test_data_records_with_a_gap_are_filled_with_ff() -> None:
    text = "\n".join([rec(0x100, 0, b"\x01\x02"), rec(0x104, 0, b"\x03"), EOF_LINE])
    img = parse_ihex(text, "a.hex")
    assert img.base == 0x100
    assert img.data == b"\x01\x02\xff\xff\x03"
    assert img.end == 0x105


def test_extended_linear_and_segment_addresses() -> None:
    linear = "\n".join([rec(0, 4, b"\x00\x01"), rec(0x10, 0, b"\xaa"), EOF_LINE])
    assert parse_ihex(linear).base == 0x10010
    segment = "\n".join([rec(0, 2, b"\x10\x00"), rec(0x2, 0, b"\xbb"), EOF_LINE])
    assert parse_ihex(segment).base == 0x10002


def test_start_address_records_are_kept() -> None:
    text = "\n".join([rec(0, 0, b"\x00"), rec(0, 5, b"\x00\x00\x01\x23"), EOF_LINE])
    assert parse_ihex(text).start_address == 0x123
    text = "\n".join([rec(0, 0, b"\x00"), rec(0, 3, b"\x00\x10\x00\x04"), EOF_LINE])
    assert parse_ihex(text).start_address == 0x104


def test_text_after_eof_and_blank_lines_are_ignored() -> None:
    text = "\n\n" + rec(0, 0, b"\x42") + "\r\n" + EOF_LINE + "\n" + rec(1, 0, b"\x43") + "\n"
    assert parse_ihex(text).data == b"\x42"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (":0100000042BC", "bad checksum 0xBC (expected 0xBD)"),
        (":01000000G2BD", "bad hex digit 'G'"),
        ("0100000042BD", "must start with ':'"),
        (":0200000042BC", "record says 2 data bytes but carries 1"),
        (":01000000", "malformed"),
        (":0100000642B7", "unknown record type 0x06"),
        (":0100000400FB", "record type 04 needs 2 data bytes"),
    ],
)
def test_bad_records_name_the_file_and_line(line: str, problem: str) -> None:
    text = "\n".join([rec(0, 0, b"\x00"), line, EOF_LINE])
    with pytest.raises(ImageError, match="fw.hex line 2: ") as info:
        parse_ihex(text, "fw.hex")
    assert problem in str(info.value)
    assert isinstance(info.value, ValueError)


def test_overlapping_records_are_refused() -> None:
    text = "\n".join([rec(0, 0, b"\x01\x02"), rec(1, 0, b"\x03"), EOF_LINE])
    with pytest.raises(ImageError, match="line 2: data at 0x1 overlaps"):
        parse_ihex(text, "o.hex")


def test_no_data_is_an_error() -> None:
    with pytest.raises(ImageError, match="no data records"):
        parse_ihex(EOF_LINE, "empty.hex")


def test_missing_eof_record_is_tolerated() -> None:
    assert parse_ihex(rec(0, 0, b"\x07")).data == b"\x07"


def test_load_by_extension_and_by_content(tmp_path) -> None:
    data = os.urandom(300)
    hexfile = tmp_path / "fw.ihex"
    hexfile.write_text(FirmwareImage(data, 0x40).to_ihex())
    img = load_image(hexfile)
    assert (img.base, img.data, img.source) == (0x40, data, str(hexfile))
    binfile = tmp_path / "fw.bin"
    binfile.write_bytes(b":looks like hex but is .bin")
    assert load_image(binfile).data == b":looks like hex but is .bin"
    assert load_image(binfile).base == 0
    unknown = tmp_path / "fw.data"
    unknown.write_text(FirmwareImage(data).to_ihex())
    assert load_image(unknown).data == data  # sniffed as HEX
    assert load_image(b"\x0c\x94\x34\x00", raw=True, name="raw").data == b"\x0c\x94\x34\x00"
    assert load_image(FirmwareImage(data).to_ihex().encode()).data == data
    assert load_image(img) is img


def test_file_errors(tmp_path) -> None:
    with pytest.raises(ImageError, match="nope.hex: no such firmware file"):
        load_image(tmp_path / "nope.hex")
    empty = tmp_path / "e.bin"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    bad = tmp_path / "b.hex"
    bad.write_bytes(rec(0, 0, b"\x01").encode() + b"\n:\xff\n")
    with pytest.raises(ImageError, match="b.hex line 2: non-ASCII"):
        load_image(bad)


def test_too_big_for_the_part_names_both_sizes() -> None:
    part = get_part("m328p")
    FirmwareImage(b"\x00" * part.app_size).check_fits(part)
    with pytest.raises(ImageError) as info:
        FirmwareImage(b"\x00" * (part.app_size + 1), source="big.hex").check_fits(part)
    message = str(info.value)
    assert "big.hex" in message and "32257" in message and "32256" in message


def test_pages_are_aligned_and_padded() -> None:
    img = FirmwareImage(b"\x01" * 130, base=0x7E)
    pages = img.pages(128)
    assert [a for a, _ in pages] == [0, 128]
    assert pages[0][1] == b"\xff" * 0x7E + b"\x01\x01"
    assert pages[1][1] == b"\x01" * 128
    assert all(len(d) == 128 for _, d in pages)


@pytest.mark.parametrize("base", [0, 0x7, 0xFFF8, 0x2FFF0])
def test_to_ihex_round_trips(base: int) -> None:
    data = os.urandom(0x10033)
    text = FirmwareImage(data, base).to_ihex()
    assert all(len(line) <= 43 for line in text.splitlines())
    again = parse_ihex(text)
    assert (again.base, again.data) == (base, data)


def test_unknown_part_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="atmega328p"):
        get_part("attiny13")


# -- what a student sends is never a path (issue: HEX text read as a file on the worker) --------


def test_a_str_is_hex_text_never_a_file_name(tmp_path, monkeypatch) -> None:
    data = os.urandom(64)
    text = FirmwareImage(data, 0x100).to_ihex()
    img = load_image(text)
    assert (img.data, img.base, img.source) == (data, 0x100, "<hex text>")
    # a str naming an existing file is refused, not read
    secret = tmp_path / "secret.hex"
    secret.write_text(text)
    for path_like in (str(secret), "/proc/self/environ", "/etc/passwd", "fw.hex"):
        with pytest.raises(ImageError, match="not Intel HEX text") as info:
            load_image(path_like)
        assert "pathlib.Path" in str(info.value)
    # the same file as a Path is a file
    assert load_image(secret).data == data


def test_errors_quote_only_a_short_excerpt() -> None:
    big = "x" * 90_000
    with pytest.raises(ImageError) as info:
        load_image(big)
    assert len(str(info.value)) < 300
    bad_hex = FirmwareImage(os.urandom(30_000)).to_ihex().replace(":10", ":1G", 1)
    with pytest.raises(ImageError, match=r"<hex text> line \d+: bad hex digit") as info:
        load_image(bad_hex)
    assert len(str(info.value)) < 300


def test_text_elf_and_unknown_bytes_are_refused_unless_raw(tmp_path) -> None:
    elf = b"\x7fELF\x01\x01\x01" + bytes(100)
    for source in (elf, tmp_path / "fw.elf", tmp_path / "fw.data"):
        if isinstance(source, Path):
            source.write_bytes(elf)
        with pytest.raises(ImageError, match="this is an ELF file; program the .hex"):
            load_image(source)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a program\n")
    with pytest.raises(ImageError, match="not Intel HEX.*raw=True"):
        load_image(text)
    with pytest.raises(ImageError, match="not Intel HEX.*raw=True"):
        load_image(b"hello")
    assert load_image(text, raw=True).data == text.read_bytes()
    assert load_image(b"hello", raw=True).data == b"hello"
    with pytest.raises(ImageError, match="raw=True needs bytes or a pathlib.Path"):
        load_image("hello", raw=True)
    with pytest.raises(ImageError, match="cannot load a firmware image from a int"):
        load_image(42)  # type: ignore[arg-type]
