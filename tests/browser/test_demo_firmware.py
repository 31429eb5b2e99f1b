"""The demo's firmware checks (no browser): bundled examples load, bad uploads are named."""

from __future__ import annotations

import pytest

from labruntime.demo.firmware import EXAMPLES, PART, FirmwareError, example, from_upload
from labruntime.drivers.image import FirmwareImage, parse_ihex

BLINK_LINE = ":10000000259A1D9A80E09AE6A8E181509040A04090"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_bundled_examples_parse_and_fit(name):
    firmware = example(name)
    image = parse_ihex(firmware.hex_text, firmware.source)
    assert firmware.size == image.size > 0 and image.end <= PART.app_size
    assert firmware.source == f"{name}.hex"


def test_blink_is_the_bundled_file():
    assert example("blink").hex_text.splitlines()[0] == BLINK_LINE


def test_unknown_example_names_the_choices():
    with pytest.raises(FirmwareError, match="no bundled example 'nope'.*blink"):
        example("nope")


def test_good_upload_round_trips():
    image = FirmwareImage(bytes(range(200)), 0x100, "x")
    firmware = from_upload("dir/../prog.hex", image.to_ihex().encode())
    assert (firmware.source, firmware.size) == ("prog.hex", 200)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "prog.hex is empty"),
        (b"hello\n", "prog.hex line 1: a record must start with ':'"),
        (f"{BLINK_LINE}\n:04001000E1F7F7CF4F\n".encode(), "prog.hex line 2: bad checksum"),
        (f"{BLINK_LINE}\n\n:0400ZZ00E1F7F7CF4E\n".encode(), "prog.hex line 3: bad hex digit"),
        (f"{BLINK_LINE}\n\xe9\n".encode("latin-1"), "prog.hex line 2: not text"),
        (b"\x7fELF\x01\x01", "prog.hex line 1"),
    ],
)
def test_bad_uploads_name_the_line(content, expected):
    with pytest.raises(FirmwareError) as info:
        from_upload("prog.hex", content)
    assert str(info.value).startswith(expected), str(info.value)
    assert isinstance(info.value, ValueError)


def test_an_image_too_big_for_the_board_is_refused():
    image = FirmwareImage(b"\x00" * (PART.app_size + 128), 0, "big")
    with pytest.raises(FirmwareError, match="bootloader"):
        from_upload("big.hex", image.to_ihex().encode())


def test_an_oversized_file_is_refused_before_parsing():
    with pytest.raises(FirmwareError, match="right file"):
        from_upload("huge.hex", b":" + b"0" * 300_000)
