"""The HIL pytest plugin itself, exercised by real pytest runs in a scratch project.

Each test writes a small test project into a temporary folder and runs ``python -m pytest`` on
it in a subprocess (the plugin comes in through labruntime's ``pytest11`` entry point, as in a
lab author's project), then checks the outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labruntime.pytest_plugin.hil import BUILTIN_SIM_MAP, ENV_VAR, DeviceMapError, parse_pair


def run_pytest(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (project / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    environ = {k: v for k, v in os.environ.items() if k != ENV_VAR and not k.startswith("PYTEST")}
    environ["LABRUNTIME_LOCK_DIR"] = str(project / "locks")
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(project: Path, name: str, text: str) -> None:
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


MAP_DUMP = """
    import json

    def test_dump(hil_device_map, tmp_path_factory):
        out = {"map": dict(hil_device_map), "source": hil_device_map.source}
        with open("map.json", "w") as fh:
            json.dump(out, fh)
"""


def dumped(project: Path) -> dict:
    import json

    return json.loads((project / "map.json").read_text())


def test_builtin_simulated_map_when_nothing_is_configured(tmp_path):
    write(tmp_path, "test_map.py", MAP_DUMP)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dumped(tmp_path) == {
        "map": BUILTIN_SIM_MAP,
        "source": "labruntime.pytest_plugin.hil.BUILTIN_SIM_MAP",
    }


def test_rootdir_config_map_is_the_default(tmp_path):
    write(tmp_path, "test_map.py", MAP_DUMP)
    write(
        tmp_path,
        "config/devices.sim.toml",
        """
        SECRET_KEY = "not a device"
        [WEBLAB_DEVICES]
        board = "sim:arduino?baud=57600"
        [HIL_DEVICES]
        board_nosync = "sim:arduino?fault=nosync"
        """,
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    info = dumped(tmp_path)
    assert info["map"] == {
        "board": "sim:arduino?baud=57600",
        "board_nosync": "sim:arduino?fault=nosync",
    }
    assert info["source"].endswith("config/devices.sim.toml")


def test_device_options_replace_the_map_and_keep_equals_signs(tmp_path):
    write(tmp_path, "test_map.py", MAP_DUMP)
    write(tmp_path, "rig.toml", 'led = "gpio:17?safe=0"\n')
    result = run_pytest(
        tmp_path,
        "-v",  # with -q, which run_pytest passes: normal verbosity, so the header shows
        "--lr-device",
        "board=stk500:/dev/ttyACM0?baudrate=115200&reset=gpio:4",
        "--lr-device",
        "rig.toml",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert dumped(tmp_path)["map"] == {
        "board": "stk500:/dev/ttyACM0?baudrate=115200&reset=gpio:4",
        "led": "gpio:17?safe=0",
    }
    assert "labruntime HIL devices (--lr-device" in result.stdout  # the report header


@pytest.mark.parametrize("form", ["pairs", "toml"])
def test_environment_variable(tmp_path, form):
    write(tmp_path, "test_map.py", MAP_DUMP)
    write(tmp_path, "devices.toml", '[WEBLAB_DEVICES]\nboard = "sim:arduino"\nled = "gpio:5"\n')
    value = "board=sim:arduino; led=gpio:5" if form == "pairs" else "devices.toml"
    result = run_pytest(tmp_path, env={ENV_VAR: value})
    assert result.returncode == 0, result.stdout + result.stderr
    assert dumped(tmp_path)["map"] == {"board": "sim:arduino", "led": "gpio:5"}


def test_malformed_device_option_is_a_usage_error(tmp_path):
    write(tmp_path, "test_nothing.py", "def test_x():\n    pass\n")
    result = run_pytest(tmp_path, "--lr-device", "stk500:/dev/ttyACM0")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "is not NAME=URL" in result.stderr and "board=stk500:/dev/ttyACM0" in result.stderr


def test_bad_toml_map_names_the_file(tmp_path):
    write(tmp_path, "test_map.py", MAP_DUMP)
    write(tmp_path, "broken.toml", "[WEBLAB_DEVICES]\nboard = 3\n")
    result = run_pytest(tmp_path, "--lr-device", "broken.toml")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "broken.toml" in result.stderr and "must be a URL string" in result.stderr


def test_missing_map_from_the_environment_is_a_usage_error(tmp_path):
    write(tmp_path, "test_nothing.py", "def test_x():\n    pass\n")
    result = run_pytest(tmp_path, env={ENV_VAR: "no/such/devices.toml"})
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "cannot read the HIL device map no/such/devices.toml" in result.stderr


def test_fixtures_open_close_skip_and_mark(tmp_path):
    write(
        tmp_path,
        "test_devices.py",
        """
        opened = []

        def test_open(hil_device):
            led = hil_device("led")
            led.on()
            assert hil_device("led") is led  # one device per name within a test
            led.close()
            led = hil_device("led")  # opened again after a close
            led.on()
            opened.append(led)

        def test_closed_and_safe_after_teardown():
            (led,) = opened
            assert led.closed
            assert led.last_safe.ok and led.last_safe.state["value"] == 0

        def test_missing(hil_device):
            hil_device("oscilloscope")

        def test_loop_missing(hil_gpio_loop):
            pass

        def test_lab(hil_lab):
            pass

        def test_plain():
            pass
        """,
    )
    result = run_pytest(tmp_path, "--lr-device", "led=gpio:17?safe=0&factory=mock")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed, 3 skipped" in result.stdout
    assert "no HIL device 'oscilloscope'" in result.stdout
    assert "--lr-device oscilloscope=URL" in result.stdout
    assert "no GPIO loopback in the HIL device map" in result.stdout
    assert "hil_lab needs devices ['board'] in the device map" in result.stdout
    # tests using a HIL fixture carry the hil marker; the others do not
    listed = run_pytest(tmp_path, "--collect-only", "-m", "not hil").stdout
    kept = sorted(line.split("::")[1] for line in listed.splitlines() if "::" in line)
    assert kept == ["test_closed_and_safe_after_teardown", "test_plain"], listed


def test_teardown_fails_when_the_device_cannot_be_driven_safe(tmp_path):
    write(
        tmp_path,
        "test_unsafe.py",
        """
        def test_unsafe(hil_device):
            led = hil_device("led")
            def broken():
                raise OSError("the pin is shorted")
            led._drive_safe = broken
        """,
    )
    result = run_pytest(tmp_path, "--lr-device", "led=gpio:17?factory=mock")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "not safe at teardown" in result.stdout and "the pin is shorted" in result.stdout


def test_loopback_from_two_devices(tmp_path):
    write(
        tmp_path,
        "test_loop.py",
        """
        def test_pair(hil_gpio_loop, hil_gpio_out, hil_gpio_in):
            assert len(hil_gpio_loop.devices) == 2
            assert hil_gpio_out is hil_gpio_loop.out and hil_gpio_in is hil_gpio_loop.inp
            assert all(report.ok for report in hil_gpio_loop.safe())
        """,
    )
    result = run_pytest(
        tmp_path,
        "--lr-device",
        "loop_out=gpio:20?factory=mock",
        "--lr-device",
        "loop_in=gpio:21?mode=in&factory=mock",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_the_plugin_does_not_import_the_device_layer():
    code = (
        "import sys, labruntime.pytest_plugin.hil; "
        "print(sorted(m for m in sys.modules if 'drivers' in m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ["board", "=sim:x", "board=", "bo ard=sim:x", "sim:x?a=b"])
def test_parse_pair_rejects(text):
    with pytest.raises(DeviceMapError, match="is not NAME=URL"):
        parse_pair(text, "--lr-device")


def test_parse_pair_keeps_the_url_whole():
    assert parse_pair(" board = stk500:/dev/x?a=1&b=2 ", "t") == ("board", "stk500:/dev/x?a=1&b=2")
