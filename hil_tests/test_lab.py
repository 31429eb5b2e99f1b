"""Lab-level HIL suites: a whole lab (HTTP, a device worker process, the RLMS) on the devices.

The same bodies run on the simulated map (default) and on a rig
(``LABRUNTIME_HIL_DEVICES=config/devices.rig.toml``).
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow  # a lab over HTTP with a device worker process per test


@pytest.fixture
def blink_hex(hil_firmware) -> str:
    return hil_firmware.BLINK_HEX.read_text()


@pytest.fixture
def large_hex(hil_firmware) -> str:
    return hil_firmware.to_intel_hex(hil_firmware.test_image(16 * 1024))


def test_safe_state_after_dispose(hil_lab, blink_hex):
    student = hil_lab.student()
    assert student.wait(student.run("light", True))["result"] is True
    assert student.wait(student.run("program_device", blink_hex))["status"] == "done"
    before = time.time()
    hil_lab.rlms.dispose(student.session_id)
    for name in ("board", "led"):
        report = hil_lab.last_safe(name)
        assert report is not None and report["ok"] and report["at"] >= before, (name, report)
    assert hil_lab.last_safe("led")["state"]["value"] == 0  # the LED is off again


def test_a_whole_rlms_session_programs_the_board(hil_lab, large_hex):
    student = hil_lab.student(assigned_time=120)
    assert hil_lab.rlms.status(student.session_id) > 0
    task_id = student.run("program_device", large_hex)
    fractions = []
    view = student.task(task_id)
    while view["status"] not in ("done", "failed"):
        if view["progress"]:
            fractions.append(view["progress"]["fraction"])
        time.sleep(0.1)
        view = student.task(task_id)
    assert view["status"] == "done" and view["result"]["verified"], view
    assert len(set(fractions)) >= 3, fractions  # the page saw the progress bar move
    assert hil_lab.rlms.status(student.session_id) > 0  # still the student's time
    hil_lab.rlms.dispose(student.session_id)
    assert hil_lab.last_safe("board")["ok"]


def test_a_worker_killed_mid_program_then_the_next_worker_recovers(hil_lab, large_hex, blink_hex):
    student = hil_lab.student()
    task_id = student.run("program_device", large_hex)
    deadline = time.monotonic() + 30
    while not (student.task(task_id)["progress"] or {}).get("done"):
        assert time.monotonic() < deadline, student.task(task_id)
        time.sleep(0.05)
    old_token = hil_lab.holder("board")["token"]
    hil_lab.kill_worker()
    hil_lab.start_worker()  # at once: the dead holder's lease is taken over, the board made safe
    assert hil_lab.holder("board")["token"] == old_token + 1
    assert hil_lab.last_safe("board")["ok"]
    view = student.wait(task_id, timeout=30)  # the new worker reaps the dead one's task
    assert view["status"] == "failed" and view["error"]["code"] == "worker-lost", view
    hil_lab.rlms.dispose(student.session_id)
    nxt = hil_lab.student(username="next")
    view = nxt.wait(nxt.run("program_device", blink_hex))
    assert view["status"] == "done" and view["result"]["verified"], view
