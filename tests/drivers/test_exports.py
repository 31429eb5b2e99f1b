"""What lab code imports from labruntime.drivers, and that the import stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import labruntime.drivers as drivers

PROBE = """
import json, sys
import labruntime.drivers as drivers
before = sorted(m for m in ("serial", "gpiozero") if m in sys.modules)
from labruntime.drivers import SimulatedArduino
after = sorted(m for m in ("serial", "gpiozero") if m in sys.modules)
print(json.dumps({"before": before, "after": after, "cls": SimulatedArduino.__module__}))
"""


def test_import_loads_no_driver_dependency_until_a_simulator_is_asked_for() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["before"] == []  # neither pyserial nor gpiozero on a bare import
    assert seen["after"] == ["serial"]  # the simulator needs pyserial, loaded on first access
    assert seen["cls"] == "labruntime.drivers.sim.arduino"


LIGHT_PROBE = """
import json, sys
import labruntime.drivers
import labruntime.pytest_plugin.hil  # the pytest plugin: every pytest run loads it (entry point)
import labruntime
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "redis", "werkzeug"))
print(json.dumps({"heavy": heavy, "labruntime": sorted(m for m in sys.modules
                                                      if m.startswith("labruntime."))}))
"""


def test_import_labruntime_drivers_and_the_hil_plugin_load_neither_flask_nor_redis() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["heavy"] == []
    assert "labruntime.extension" not in seen["labruntime"]
    assert (
        "labruntime.drivers" in seen["labruntime"]
        and "labruntime.pytest_plugin.hil" in seen["labruntime"]
    )


def test_lab_code_reaches_images_and_the_simulator_from_the_package() -> None:
    for name in ("FirmwareImage", "load_image", "SimulatedArduino"):
        assert name in drivers.__all__
        assert name in dir(drivers)
    image = drivers.load_image(drivers.FirmwareImage(b"\x0c\x94" * 100).to_ihex().encode())
    assert isinstance(image, drivers.FirmwareImage) and image.size == 200
    with drivers.SimulatedArduino(baudrate=115200) as board:
        assert board.tty_path.endswith("ttyARDUINO")
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        drivers.NoSuchThing  # noqa: B018
