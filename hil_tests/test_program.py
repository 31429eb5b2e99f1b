"""Programming a board: the same test bodies on a simulated Arduino or a real one on a Pi.

In CI (and by default) the devices come from ``config/devices.sim.toml``: ``sim:arduino``, a
simulated Optiboot bootloader on a pseudo-terminal driven by the real STK500 driver, and
``sim:gpio`` for the GPIO loopback. On a real rig::

    # on the Raspberry Pi, from the repository (stop the lab's worker first: it holds the board)
    sudo systemctl stop labruntime-worker
    LABRUNTIME_HIL_DEVICES=config/devices.rig.toml .venv/bin/python -m pytest hil_tests -v
    # or name devices one by one (a device missing from the map skips its tests, with a reason)
    .venv/bin/python -m pytest hil_tests --lr-device board=stk500:/dev/ttyACM0?reset=dtr

The rig (config/devices.rig.toml, BCM numbers, physical pins in brackets):

* ``board``: an Arduino Uno with Optiboot on USB, named ``/dev/arduino-uno`` by
  config/udev/99-labruntime.rules (by serial number). Reset: GPIO27 [13] -> 1 kOhm -> base of
  an NPN (2N2222), collector on the Uno's RESET, emitter on GND [14], 10 kOhm base to GND
  (``reset=gpio:27``); or ``reset=dtr`` to use the USB adapter's auto-reset and no wire.
* ``board_nosync``: the same board at 9600 baud, which Optiboot does not speak (no answer).
* ``led``: GPIO17 [11] -> 330 Ohm -> LED -> GND [9].
* ``loop_out`` GPIO20 [38] -- jumper -- GPIO21 [40] ``loop_in``.

The user needs the groups ``dialout`` and ``gpio``; gpiozero picks lgpio on Raspberry Pi OS
(``GPIOZERO_PIN_FACTORY=lgpio`` to be explicit). The images: ``labruntime/demo/blink.hex`` (a
real blink for PB5, the Uno's LED; see hil_tests/firmware.py) and an 8 KiB image of blink plus
a never-executed filler, so a test can stop it half-way; each test leaves blink on the board.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from labruntime.drivers import (
    DeviceTimeoutError,
    DriverError,
    OperationCancelled,
    ProgrammingError,
    Progress,
)

#: avrdude needs about 56 s to give up on a board that does not answer; the driver's default
#: sync timeout is 3 s. This bound only catches a driver that waits far too long.
FAIL_FAST_SECONDS = 10.0


def _stage(events: list[Progress], stage: str) -> list[Progress]:
    return [event for event in events if event.stage == stage]


def test_program_and_verify(hil_board, blink_image):
    events: list[Progress] = []
    result = hil_board.program(blink_image, verify=True, progress=events.append)
    assert result.verified is True
    assert result.bytes == len(blink_image.data)
    assert result.seconds > 0
    for stage in ("write", "verify"):
        seen = _stage(events, stage)
        assert seen, f"no {stage!r} progress reported"
        assert [e.done for e in seen] == sorted(e.done for e in seen)
        assert seen[-1].done == seen[-1].total
    report = hil_board.safe()
    assert report.ok, report.detail


def test_large_image_reports_progress_page_by_page(hil_board, large_image, blink_image):
    events: list[Progress] = []
    result = hil_board.program(large_image, progress=events.append)
    assert result.verified and result.bytes == len(large_image.data)
    writes = _stage(events, "write")
    assert len(writes) == writes[-1].total > 8  # one event per page
    assert [e.done for e in writes] == list(range(1, len(writes) + 1))
    estimate = hil_board.estimate_seconds(large_image)
    assert estimate > 0
    assert hil_board.program(blink_image).verified


@pytest.mark.parametrize("how", ["cancel-source", "safe-from-another-thread"])
def test_cancel_mid_program_leaves_the_board_safe_and_programmable(
    hil_board, large_image, blink_image, how
):
    cancel = threading.Event()
    quarter = threading.Event()
    events: list[Progress] = []

    def progress(event: Progress) -> None:
        events.append(event)
        if event.stage == "write" and event.done * 4 >= event.total:
            quarter.set()
            if how == "cancel-source":
                cancel.set()

    reports = []
    helper = None
    if how == "safe-from-another-thread":  # what a session's dispose does

        def drive_safe() -> None:
            if quarter.wait(30):
                reports.append(hil_board.safe())

        helper = threading.Thread(target=drive_safe)
        helper.start()
    try:
        with pytest.raises(OperationCancelled):
            hil_board.program(large_image, progress=progress, cancel=cancel)
    finally:
        quarter.set()
        if helper is not None:
            helper.join(30)
    writes = _stage(events, "write")
    assert writes and writes[-1].done < writes[-1].total, "the cancel came too late"
    assert not _stage(events, "verify")
    if helper is not None:
        assert len(reports) == 1 and reports[0].ok, reports
    report = hil_board.safe()
    assert report.ok, report.detail
    assert report.state.get("progmode") in (False, None)
    # a half-written program never runs: the native driver erased the reset vector first
    assert report.state.get("program") in ("none", None)
    assert not hil_board.ops.in_flight
    result = hil_board.program(blink_image)  # programmable again, at once
    assert result.verified


def test_deadline_stops_programming_and_the_board_recovers(hil_board, large_image, blink_image):
    estimate = hil_board.estimate_seconds(large_image)
    with pytest.raises(DeviceTimeoutError):
        hil_board.program(large_image, timeout=estimate / 5)
    assert hil_board.safe().ok
    assert hil_board.program(blink_image).verified


def test_a_board_that_does_not_answer_fails_fast_with_a_useful_message(hil_device, blink_image):
    started = time.monotonic()
    with pytest.raises(DriverError) as info:
        board = hil_device("board_nosync")
        board.program(blink_image)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, (DeviceTimeoutError, ProgrammingError)), repr(info.value)
    assert elapsed < FAIL_FAST_SECONDS, f"took {elapsed:.1f} s to give up"
    message = str(info.value).lower()
    assert "check" in message and "baud" in message, message


def test_safe_is_idempotent_and_describe_is_json(hil_board):
    first, second = hil_board.safe(), hil_board.safe()
    assert first.ok and second.ok
    assert first.state == second.state
    info = json.loads(json.dumps(hil_board.describe()))
    assert "programmer" in info["capabilities"]
    assert info["busy"] is False
