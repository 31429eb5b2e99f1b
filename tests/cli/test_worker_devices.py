"""``--device`` of the worker commands: a bare ``serial:PORT`` moves a configured
serial-attached device to PORT (driver and options kept), another kind is refused naming both
URLs, the worker prints the full URL of what it holds; every command that needs a lab says how
to name it, with one exit status."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from labruntime import InvalidConfigError
from labruntime.cli.app import NO_LAB_EXIT
from labruntime.cli.main import main
from labruntime.devices.option import parse_device_options
from labruntime.drivers.sim.arduino import SimulatedArduino

AVRDUDE = (
    "command:avrdude?port=/dev/ttyACM0&args=-c arduino -p m328p -P {port} -U flash:w:{image}:i"
)


@pytest.mark.parametrize(
    ("configured", "given", "expected"),
    [
        ("stk500:/dev/ttyS9?baudrate=1200", "serial:/dev/ttyS0", "stk500:/dev/ttyS0?baudrate=1200"),
        ("serial:/dev/ttyS9?baudrate=9600", "serial:/dev/ttyS0", "serial:/dev/ttyS0?baudrate=9600"),
        (AVRDUDE, "serial:/dev/ttyUSB0", AVRDUDE.replace("/dev/ttyACM0", "/dev/ttyUSB0")),
        ("sim:arduino?baud=115200", "stk500:/dev/ttyUSB0", "stk500:/dev/ttyUSB0"),  # programmers
        ("gpio:17?safe=0", "gpio:27", "gpio:27"),
    ],
)  # fmt: skip
def test_a_url_of_the_same_kind_or_a_port_is_taken(configured, given, expected):
    assert parse_device_options({"board": configured}, (given,)) == {"board": expected}
    assert parse_device_options({"board": configured}, (f"board={given}",)) == {"board": expected}


@pytest.mark.parametrize(
    ("configured", "given"),
    [
        ("stk500:/dev/ttyS9?baudrate=115200", "gpio:17"),
        ("stk500:/dev/ttyS9", "serial:/dev/ttyUSB0?baudrate=9600"),  # a console, not a port
        ("sim:arduino", "serial:/dev/ttyUSB0"),  # no port to move
        ("gpio:17", "gpio:27?mode=in"),
        ("command:mytool?args=--go", "serial:/dev/ttyUSB0"),  # no {port} in its arguments
    ],
)
def test_another_kind_is_refused_naming_both_urls(configured, given):
    with pytest.raises(InvalidConfigError) as info:
        parse_device_options({"board": configured}, (given,))
    message = str(info.value)
    assert configured in message and given in message and "'board'" in message, message


@pytest.mark.slow
def test_a_bare_serial_port_moves_the_configured_programmer(
    devlab_factory, worker_factory, hex_small
):
    devices = {"board": "stk500:/dev/ttyNOPE0?baudrate=115200&reset=none"}
    with SimulatedArduino(baudrate=115200) as sim:
        port = sim.start()
        lab = devlab_factory(threads=0, start=False, devices=devices)
        worker = worker_factory("loop", "--device", f"serial:{port}", devices=devices)
        worker.wait_for(f"board = stk500:{port}?baudrate=115200&reset=none")
        assert lab.holder("board")["url"] == f"stk500:{port}?baudrate=115200&reset=none"
        task = lab.delay(lab.start_session(), "program_device", hex_small).join(timeout=60)
        assert task.done and task.result["verified"], (task.error, worker.output())
        assert worker.terminate() == 0


@pytest.mark.slow
def test_a_worker_given_another_kind_exits_at_start_naming_both(worker_factory):
    devices = {"board": "stk500:/dev/ttyNOPE0?baudrate=115200"}
    worker = worker_factory("loop", "--device", "gpio:17?factory=mock", devices=devices)
    assert worker.proc.wait(timeout=30) == 1
    out = worker.output()
    assert "stk500:/dev/ttyNOPE0?baudrate=115200" in out and "gpio:17?factory=mock" in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "command",
    [
        ["run-tasks"],
        ["loop"],
        ["fake", "new", "--dont-open-browser"],
        ["fake", "status"],
        ["fake", "dispose"],
        ["clean-expired-users"],
        ["redis", "start"],
        ["redis", "status"],
        ["redis", "stop"],
        ["device", "status"],
    ],
)
def test_every_command_needing_a_lab_says_how_to_name_it(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no wsgi.py, no app.py
    monkeypatch.delenv("FLASK_APP", raising=False)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == NO_LAB_EXIT, result.output
    assert "--app MODULE:APP" in result.output and "FLASK_APP" in result.output
    assert " ".join(command[:2]) in result.output.replace("--dont-open-browser", "")


@pytest.mark.slow
def test_loop_says_the_same_thread_count_as_its_log(worker_factory):
    worker = worker_factory("loop", "--threads", "2", "--device", "led")
    worker.wait_for("SIGTERM to stop")
    out = worker.output()
    printed = re.search(r"loop: worker \S+, (\d+) runner thread\(s\)", out)
    logged = re.search(r"worker \S+: (\d+) runner thread\(s\) on", out)
    assert printed and logged, out
    assert printed.group(1) == logged.group(1) == "3", out  # 2 asked + 1 for the led's queue
    assert "2 asked" in out
