"""Fixtures shared by the HIL suites: the bundled blink firmware and larger test images.

The device fixtures (``hil_board``, ``hil_gpio_loop``, ...) come from the labruntime pytest
plugin (:mod:`labruntime.pytest_plugin.hil`); see that module and hil_tests/test_program.py for
how to point the suites at a real rig.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests._helpers import load_module

#: Large enough to cancel mid-write (64 pages of an ATmega328P), small enough to stay quick.
LARGE_IMAGE_BYTES = 8 * 1024


firmware = load_module(Path(__file__).with_name("firmware.py"), "labruntime_hil_firmware")


@pytest.fixture(scope="session")
def hil_firmware() -> ModuleType:
    """The firmware module (the blink assembler and test-image builder)."""
    return firmware


@pytest.fixture(scope="session")
def blink_image() -> Any:
    """labruntime/demo/blink.hex, loaded by the device layer's image loader."""
    from labruntime.drivers.image import load_image

    return load_image(firmware.BLINK_HEX)


@pytest.fixture(scope="session")
def large_image() -> Any:
    """Blink plus a never-executed filler, LARGE_IMAGE_BYTES in all (for cancel and deadline)."""
    from labruntime.drivers.image import FirmwareImage

    return FirmwareImage(firmware.test_image(LARGE_IMAGE_BYTES), 0, "hil large test image")
