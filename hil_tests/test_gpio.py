"""GPIO loopback: an output wired to an input (a jumper on a real Pi, a wired mock pair in sim).

The same bodies run on both; see hil_tests/test_program.py's docstring for the rig's wiring.
The loop's output declares ``safe=1`` and its input has a pull-down, so reading the safe level
through the jumper proves that ``safe()`` drives the pin rather than letting it float.
"""

from __future__ import annotations

import threading
import time

import pytest

from labruntime.drivers import OperationCancelled


def _safe_value(line) -> bool:
    return bool(line.describe()["safe_value"])


def test_input_follows_the_output(hil_gpio_out, hil_gpio_in):
    for value in (True, False, True, False):
        hil_gpio_out.value = value
        assert hil_gpio_in.wait_for(value, timeout=1.0), f"input did not follow output={value}"
        assert hil_gpio_in.value == value
        assert hil_gpio_out.value == value


def test_edge_from_another_thread_wakes_the_wait(hil_gpio_out, hil_gpio_in):
    hil_gpio_out.off()
    assert hil_gpio_in.wait_for(False, timeout=1.0)
    timer = threading.Timer(0.05, hil_gpio_out.on)
    timer.start()
    try:
        assert hil_gpio_in.wait_for(True, timeout=5.0)
    finally:
        timer.cancel()
        timer.join()


def test_wait_without_an_edge_times_out(hil_gpio_out, hil_gpio_in):
    hil_gpio_out.off()
    assert hil_gpio_in.wait_for(True, timeout=0.2) is False
    assert hil_gpio_in.value is False


def test_safe_actively_drives_the_declared_level(hil_gpio_loop):
    safe = _safe_value(hil_gpio_loop.out)
    hil_gpio_loop.out.value = not safe
    assert hil_gpio_loop.inp.wait_for(not safe, timeout=1.0)
    reports = hil_gpio_loop.safe()
    assert all(report.ok for report in reports), [r.detail for r in reports]
    assert hil_gpio_loop.out.value == safe
    assert hil_gpio_loop.inp.wait_for(safe, timeout=1.0), "the input does not see the safe level"
    # still usable afterwards: safe() is not close()
    hil_gpio_loop.out.value = not safe
    assert hil_gpio_loop.inp.wait_for(not safe, timeout=1.0)


def test_safe_cancels_a_pending_edge_wait(hil_gpio_loop):
    hil_gpio_loop.out.off()
    outcome: list[BaseException | bool] = []

    def waiter() -> None:
        try:
            outcome.append(hil_gpio_loop.inp.wait_for(True, timeout=30.0))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    device = hil_gpio_loop.devices[-1]  # the input's device
    deadline = time.monotonic() + 10
    while not device.ops.busy and thread.is_alive() and time.monotonic() < deadline:
        thread.join(0.01)  # until the wait has started (it is an operation of the device)
    assert device.ops.busy, "the edge wait did not start"
    reports = hil_gpio_loop.safe()
    thread.join(10)
    assert not thread.is_alive(), "safe() did not end the pending wait"
    assert all(report.ok for report in reports)
    assert len(outcome) == 1 and isinstance(outcome[0], OperationCancelled)


def test_led_is_off_after_safe(hil_led):
    safe = _safe_value(hil_led)
    hil_led.value = not safe
    assert hil_led.value == (not safe)
    report = hil_led.safe()
    assert report.ok, report.detail
    assert hil_led.value == safe
    assert report.state["value"] == int(safe)


@pytest.mark.parametrize("value", [True, False])
def test_on_off_match_value(hil_gpio_out, hil_gpio_in, value):
    (hil_gpio_out.on if value else hil_gpio_out.off)()
    assert hil_gpio_in.wait_for(value, timeout=1.0)
