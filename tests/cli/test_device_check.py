"""``device check`` tells the truth: it contacts the device as deeply as its kind allows and
exits 1 with the reason when it cannot; a port another program has open is refused naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from labruntime.cli.devices import device_group


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A tty where nothing answers (a port with no board behind it)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    try:
        yield path
    finally:
        os.close(master)


def check(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(device_group, ["check", url])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("url", ["sim:arduino?fault=nosync", "stk500:{silent}"])
def test_a_programmer_that_does_not_answer_fails_with_the_reason(url, silent_port):
    code, output = check(url.format(silent=silent_port))
    assert code == 1, output
    assert "contact: FAILED" in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "no answer from the bootloader" in last, output
    assert "in 3 s" in last  # the same diagnosis as program, after the same 3 s


def test_a_programmer_that_answers_is_in_sync_with_its_signature():
    code, output = check("sim:arduino")
    assert code == 0, output
    assert "contact: ok" in output and "signature: 1e950f" in output and "safe: ok" in output


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("gpio:17?factory=mock", "driven on and off, read back"),
        ("sim:gpio?wired=17-27", "1 pair(s) driven and read back"),
        ("serial:loop://", "port opened"),
    ],
)
def test_outputs_are_driven_and_read_back_consoles_opened(url, said):
    code, output = check(url)
    assert code == 0 and said in output, output


@pytest.mark.parametrize("scheme", ["stk500", "serial"])
def test_a_port_another_program_has_open_is_refused_naming_it(silent_port, scheme):
    holder = subprocess.Popen(  # like screen or minicom: it opens the port, takes no lock
        [sys.executable, "-c", "import sys; f = open(sys.argv[1], 'rb', buffering=0); "
         "print('open', flush=True); sys.stdin.read()", silent_port],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, output = check(f"{scheme}:{silent_port}")
        assert code == 1, output
        assert f"held by pid {holder.pid} ({sys.executable} -c" in output, output
    finally:
        holder.kill()
        holder.communicate(timeout=10)
    code, output = check(f"serial:{silent_port}")  # free once that program is gone
    assert code == 0, output


@pytest.mark.parametrize(
    "url", ["serial:loop://?baud=9600", "stk500:{silent}?baud=9600", "sim:arduino?baud=9600"]
)
def test_baud_and_baudrate_are_one_option_everywhere(url, silent_port):
    from labruntime.drivers import open_device

    for spelling in ("baud", "baudrate"):
        with open_device(url.format(silent=silent_port).replace("baud=", f"{spelling}=")) as dev:
            assert dev.describe()["baudrate"] == 9600


def test_a_command_programmer_checks_its_tool_and_port(silent_port):
    tool = f"command:{sys.executable}?port={silent_port}&args=-c pass {{image}} {{port}}"
    code, output = check(tool)
    assert code == 0 and f"tool: {sys.executable}" in output, output
    code, output = check("command:no-such-tool-here?args={image}")
    assert code == 1 and "'no-such-tool-here' is not on PATH" in output, output  # at open
    code, output = check(f"command:{sys.executable}?port=/dev/ttyNOPE9&args={{image}} {{port}}")
    assert code == 1 and "/dev/ttyNOPE9 does not exist" in output, output


def test_an_output_is_read_back_on_the_input_wired_to_it():
    # mock pins 20 and 21 are not joined: as a rig whose jumper is missing
    result = CliRunner().invoke(
        device_group,
        ["check", "gpio:20?factory=mock", "--wired-to", "gpio:21?mode=in&factory=mock"],
    )
    assert result.exit_code == 1, result.output
    assert "gpio:21?mode=in&factory=mock wired to it reads 0" in result.output
    assert "check the wiring" in result.output
    refused = CliRunner().invoke(
        device_group, ["check", "gpio:20?factory=mock", "--wired-to", "serial:loop://"]
    )
    assert refused.exit_code == 2 and "is not a GPIO input" in refused.output
