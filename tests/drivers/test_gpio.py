"""gpio: and sim:gpio on gpiozero's MockFactory: safe levels driven actively, edge waits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from labruntime.drivers import (
    Console,
    DeviceBusyError,
    DeviceClosedError,
    DeviceIOError,
    DeviceURLError,
    DigitalInput,
    DigitalOutput,
    OperationCancelled,
    has_capability,
    open_device,
)
from labruntime.drivers.gpio import shared_factory


def mock_pin(name: str):  # noqa: ANN201 - a gpiozero MockPin
    return shared_factory("mock").pin(name)


def test_mock_factory_does_not_become_gpiozeros_global() -> None:
    from gpiozero import Device as ZeroDevice

    before = ZeroDevice.pin_factory
    with open_device("gpio:17?factory=mock"):
        assert ZeroDevice.pin_factory is before


def test_output_on_off_and_capabilities() -> None:
    with open_device("gpio:GPIO17?factory=mock", name="led") as led:
        assert has_capability(led, DigitalOutput)
        assert not has_capability(led, DigitalInput) and not has_capability(led, Console)
        pin = mock_pin("GPIO17")
        assert led.value is False and pin.state is False
        led.on()
        assert led.value is True and pin.state is True
        led.value = False
        assert pin.state is False
        info = led.describe()
        assert info["pin"] == "GPIO17" and info["name"] == "led" and info["safe_value"] == 0


def test_safe_drives_the_level_actively_and_reads_it_back() -> None:
    with open_device("gpio:17?factory=mock&safe=0") as dev:
        pin = mock_pin("GPIO17")
        dev.on()
        report = dev.safe()
        assert report.ok
        assert report.state == {"pin": "GPIO17", "mode": "out", "value": 0, "level": 0}
        assert pin.function == "output" and pin.state is False  # driven, not floating
        assert dev.safe().ok  # idempotent


def test_active_low_safe_on_and_close_leaves_the_safe_level() -> None:
    dev = open_device("gpio:BOARD11?factory=mock&active_high=false&safe=1")
    pin = mock_pin("GPIO17")
    assert dev.value is True and pin.state is False  # safe=1 (on) on an active-low line: low
    dev.off()
    assert pin.state is True
    pin.clear_states()
    dev.close()
    assert [s.state for s in pin.states][-1] is False  # close() drove safe before releasing
    with pytest.raises(DeviceClosedError):
        dev.on()


def test_the_same_pin_under_another_name_is_busy() -> None:
    with open_device("gpio:17?factory=mock"):
        with pytest.raises(DeviceBusyError, match="busy"):
            open_device("gpio:BOARD11?factory=mock&mode=in")
    open_device("gpio:BOARD11?factory=mock&mode=in").close()


def test_input_value_and_edge_waits() -> None:
    with open_device("gpio:27?factory=mock&mode=in") as button:
        assert has_capability(button, DigitalInput) and not has_capability(button, DigitalOutput)
        pin = mock_pin("GPIO27")
        assert button.value is False
        timer = threading.Timer(0.05, pin.drive_high)
        timer.start()
        t0 = time.monotonic()
        assert button.wait_for_active(timeout=5) is True
        timer.join()
        assert time.monotonic() - t0 < 4
        assert button.value is True
        assert button.wait_for_active(timeout=0) is True  # already there
        t0 = time.monotonic()
        assert button.wait_for_inactive(timeout=0.1) is False
        assert time.monotonic() - t0 >= 0.09
        pin.drive_low()
        assert button.wait_for(False, timeout=1) is True
        report = button.safe()
        assert report.ok and report.state == {"pin": "GPIO27", "mode": "in", "value": 0}


def test_pull_up_input_is_active_low() -> None:
    with open_device("gpio:22?factory=mock&mode=in&pull=up") as button:
        pin = mock_pin("GPIO22")
        assert pin.state is True and button.value is False
        pin.drive_low()
        assert button.value is True


def test_safe_cancels_a_waiting_edge_wait() -> None:
    button = open_device("gpio:27?factory=mock&mode=in")
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        try:
            button.wait_for_active(timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    waiting.wait(5)
    deadline = time.monotonic() + 5
    while not button.ops.busy and time.monotonic() < deadline:
        time.sleep(0.005)  # the wait registers its operation just after the event
    t0 = time.monotonic()
    report = button.safe()
    thread.join(5)
    assert time.monotonic() - t0 < 2
    assert report.ok and "cancelled 1 operation" in report.detail
    assert len(outcome) == 1 and isinstance(outcome[0], OperationCancelled)
    button.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gpio:17?factory=mock&mode=sideways", "must be one of out, in"),
        ("gpio:17?factory=mock&pull=up", "unknown option 'pull'"),
        ("gpio:17?factory=mock&mode=in&safe=1", "unknown option 'safe'"),
        ("gpio:17?factory=mock&mode=in&pull=down&active_high=false", "only allowed on inputs"),
        ("gpio:99?factory=mock", "'99' is not a GPIO pin name"),
        ("gpio:17?factory=toaster", "must be one of lgpio, .*mock"),
        ("gpio:17?factory=mock&safe=maybe", "not a boolean"),
        ("gpio:BOARD1?factory=mock", "'BOARD1' is the 3V3 pin of the header, not a GPIO line"),
        ("gpio:GND?factory=mock", "'GND' is the GND pin of the header, not a GPIO line"),
    ],
)
def test_bad_gpio_urls_show_the_grammar(url: str, message: str) -> None:
    with pytest.raises(DeviceURLError, match=message) as info:
        open_device(url)
    assert "gpio:PIN?mode=out" in str(info.value)


def test_no_gpio_hardware_is_a_clear_io_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    code = (
        "from labruntime.drivers import open_device, DeviceIOError\n"
        "try:\n    open_device('gpio:17')\n"
        "except DeviceIOError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "factory=mock" in out.stdout and "GPIOZERO_PIN_FACTORY" in out.stdout, out.stderr
    # gpiozero's fallback warnings are folded into the message, not sprayed on stderr
    assert "Falling back from native" in out.stdout
    assert "Warning" not in out.stderr, out.stderr


def test_default_factory_from_the_environment_leases_the_pin_per_process() -> None:
    code = (
        "import sys\nfrom labruntime.drivers import open_device, DeviceBusyError\n"
        "dev = open_device('gpio:17')\nprint(dev.describe()['pin'], flush=True)\n"
        "sys.stdin.read()\ndev.close()\n"
    )
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "GPIO17"
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "from labruntime.drivers import open_device\nopen_device('gpio:GPIO17')",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert "DeviceBusyError" in other.stderr and f"pid {proc.pid}" in other.stderr
    finally:
        proc.communicate("", timeout=10)
    assert proc.returncode == 0


# -- sim:gpio ---------------------------------------------------------------------------------


def test_sim_gpio_loopback_drives_the_wired_input() -> None:
    with open_device("sim:gpio?wired=17-27,18-22&out=23") as board:
        led, sense = board.output(17), board.input("GPIO27")
        assert has_capability(led, DigitalOutput) and has_capability(sense, DigitalInput)
        assert sense.value is False
        led.on()
        assert sense.value is True and sense.wait_for_active(0.1)
        assert board.input(22).value is False  # the other pair is untouched
        timer = threading.Timer(0.05, led.off)
        timer.start()
        assert sense.wait_for_inactive(5) is True
        timer.join()
        board.output("BOARD12").on()  # GPIO18 by its physical pin
        assert board.input(22).value is True
        report = board.safe()
        assert report.ok and board.input(22).value is False
        assert set(report.state["outputs"]) == {"GPIO17", "GPIO18", "GPIO23"}
        info = board.describe()
        assert info["wired"] == ["GPIO17-GPIO27", "GPIO18-GPIO22"]
        with pytest.raises(KeyError, match="not an output"):
            board.output(27)
        with pytest.raises(KeyError, match="not an input"):
            board.input(23)
    with pytest.raises(DeviceClosedError):
        board.output(17)


def test_sim_gpio_boards_are_independent() -> None:
    with open_device("sim:gpio?wired=17-27") as a, open_device("sim:gpio?wired=17-27") as b:
        a.output(17).on()
        assert a.input(27).value is True and b.input(27).value is False


def test_sim_gpio_active_low_safe_level() -> None:
    with open_device("sim:gpio?wired=17-27&active_high=false&pull=none&safe=0") as board:
        assert board.output(17).level is True  # off on an active-low line is high
        assert board.input(27).value is False  # ... and the active-low input reads inactive
        board.output(17).on()
        assert board.input(27).value is True


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim:gpio", "no pins"),
        ("sim:gpio?out=17&in=17", "both an output and an input"),
        ("sim:gpio?wired=17-27,18-27", "wired to two outputs"),
        ("sim:gpio?out=17,17", "listed twice"),
        ("sim:gpio?wired=17", "is not OUT-IN"),
        ("sim:gpio?wired=17-99", "'99' is not a GPIO pin name"),
        ("sim:gpio?out=17&mode=in", "unknown option 'mode'"),
    ],
)
def test_bad_sim_gpio_urls(url: str, message: str) -> None:
    with pytest.raises(DeviceURLError, match=message) as info:
        open_device(url)
    assert "sim:gpio?out=" in str(info.value)


def test_failed_open_raises_io_error_type() -> None:
    assert issubclass(DeviceIOError, OSError)
