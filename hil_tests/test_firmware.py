"""The bundled blink firmware is the AVR program firmware.py documents, byte for byte."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def test_bundled_hex_is_what_the_assembler_produces(hil_firmware):
    expected = hil_firmware.to_intel_hex(hil_firmware.blink_bytes())
    assert hil_firmware.BLINK_HEX.read_text(encoding="ascii") == expected, (
        "labruntime/demo/blink.hex is stale: run .venv/bin/python hil_tests/firmware.py"
    )


def test_device_layer_loads_the_blink_image(blink_image, hil_firmware):
    assert blink_image.base == 0
    assert blink_image.data == hil_firmware.blink_bytes()


@pytest.mark.parametrize(
    ("index", "word", "meaning"),
    [
        (0, 0x9A25, "sbi 0x04, 5 (DDRB: PB5 output)"),
        (1, 0x9A1D, "sbi 0x03, 5 (PINB: toggle PB5)"),
        (5, 0x5081, "subi r24, 1"),
        (6, 0x4090, "sbci r25, 0"),
        (8, 0xF7E1, "brne .-8"),
        (9, 0xCFF7, "rjmp .-18"),
    ],
)
def test_instruction_encodings_match_the_avr_manual(hil_firmware, index, word, meaning):
    # Reference words from the AVR instruction set manual, as avr-as assembles them.
    assert hil_firmware.blink_words()[index] == word, meaning


def test_delay_loop_blinks_at_one_hertz(blink_image):
    words = [int.from_bytes(blink_image.data[i : i + 2], "little") for i in range(0, 20, 2)]
    # ldi r24..r26: immediate = KKKK from bits 11-8 and 3-0
    imm = [((w >> 4) & 0xF0) | (w & 0x0F) for w in words[2:5]]
    turns = imm[0] | imm[1] << 8 | imm[2] << 16
    cycles_per_turn = 1 + 1 + 1 + 2  # subi, sbci, sbci, brne taken
    assert turns * cycles_per_turn / 16e6 == pytest.approx(0.5)  # half period at 16 MHz


@pytest.mark.skipif(shutil.which("avr-objdump") is None, reason="avr-objdump not installed")
def test_disassembles_to_the_documented_program(hil_firmware):
    out = subprocess.run(
        ["avr-objdump", "-D", "-m", "avr5", "-b", "ihex", str(hil_firmware.BLINK_HEX)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    mnemonics = [line.split("\t")[2] for line in out.splitlines() if line.count("\t") >= 2]
    assert mnemonics == ["sbi", "sbi", "ldi", "ldi", "ldi", "subi", "sbci", "sbci", "brne", "rjmp"]
