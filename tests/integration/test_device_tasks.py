"""Tasks that use devices, in one process holding them (runner threads of the web process)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from labruntime import DeviceUnavailableError, NoContextError, current_devices
from labruntime.drivers import Device, DeviceIOError, register_scheme, unregister_scheme


@pytest.mark.slow
def test_program_device_runs_with_progress_and_result(devlab_factory, hex_30k):
    lab = devlab_factory()
    sid = lab.start_session()
    task = lab.delay(sid, "program_device", hex_30k)
    seen: list[tuple[float, dict]] = []
    deadline = time.monotonic() + 60
    while not task.retrieve().finished and time.monotonic() < deadline:
        if task.progress and (not seen or seen[-1][1] != task.progress):
            seen.append((time.monotonic(), task.progress))
        time.sleep(0.02)
    assert task.status == "done", task.error
    assert task.result["verified"] is True and task.result["bytes"] == 30 * 1024
    assert set(task.progress) == {"stage", "done", "total", "fraction", "updated"}
    assert task.progress["fraction"] == 1.0  # the last event is always written
    stages = {p["stage"] for _, p in seen}
    assert {"write", "verify"} <= stages, stages
    span = seen[-1][0] - seen[0][0]
    assert span > 1 and len(seen) / span >= 4, f"{len(seen)} updates in {span:.1f} s"


@pytest.mark.slow
def test_stop_cancels_the_device_operation_and_the_board_is_safe(
    devlab_factory, hex_30k, hex_small, caplog
):
    caplog.set_level(logging.INFO, logger="labruntime.tasks.runner")
    lab = devlab_factory()
    sid = lab.start_session()
    task = lab.delay(sid, "program_device", hex_30k)
    deadline = time.monotonic() + 30
    while not (task.retrieve().progress or {}).get("done") and time.monotonic() < deadline:
        time.sleep(0.02)
    task.stop()
    task.join(timeout=10)
    assert task.failed and task.error["class"] == "OperationCancelled", task.error
    assert task.error["code"] == "stopped", task.error  # not "exception": a page tells them apart
    mine = [r for r in caplog.records if task.task_id in r.getMessage()]
    assert [r.levelname for r in mine] == ["INFO"], [r.getMessage() for r in mine]
    assert "stopped" in mine[0].getMessage()  # an expected stop: one line, no traceback
    again = lab.delay(sid, "program_device", hex_small)
    assert again.join(timeout=30).done, again.error  # the board is usable again


def test_dispose_drives_the_used_devices_safe(devlab_factory):
    lab = devlab_factory()
    sid = lab.start_session()
    assert lab.delay(sid, "light").join(timeout=10).result is True
    lab.redis.delete(f"{lab.base}:device:led:safe")
    lab.rlms.dispose(sid)
    report = lab.last_safe("led")
    assert report is not None and report["ok"], report
    assert report["state"], report
    assert lab.state.devices.holder.devices["led"].value is False


def test_current_devices_names_the_declared_devices(devlab_factory):
    lab = devlab_factory()
    sid = lab.start_session()
    task = lab.delay(sid, "ask_for_board").join(timeout=10)
    assert task.failed and "'board'" in task.error["message"] and "['led']" in task.error["message"]
    with pytest.raises(NoContextError, match="devices="):
        current_devices["board"]


def test_delay_with_no_holder_says_which_worker_to_start(devlab_factory, hex_small):
    lab = devlab_factory(threads=0, start=False)
    sid = lab.start_session()
    with pytest.raises(DeviceUnavailableError) as info:
        lab.delay(sid, "program_device", hex_small)
    message = str(info.value)
    command = "labruntime --app " + str(Path(__file__).with_name("devlab.py"))
    assert f"`{command} loop --device board`" in message, message


def test_the_readme_task_programs_hex_text_and_never_opens_a_students_path(
    devlab_factory, hex_small, tmp_path
):
    lab = devlab_factory()
    sid = lab.start_session()
    task = lab.delay(sid, "program_as_readme", hex_small).join(timeout=30)
    assert task.status == "done", task.error
    assert task.result["verified"] is True and task.result["bytes"] > 0
    # what a student sends is text, never a file name on the worker
    planted = tmp_path / "planted.hex"
    planted.write_text(hex_small)
    for hostile in ("/proc/self/environ", str(planted), "x" * 50_000):
        task = lab.delay(sid, "program_as_readme", hostile).join(timeout=30)
        assert task.failed and task.error["class"] == "ImageError", task.error
        assert "not Intel HEX text" in task.error["message"]
        assert len(task.error["message"]) < 400, task.error["message"]
        assert task.result is None


def test_not_enough_time_refuses_to_program(devlab_factory, hex_30k):
    lab = devlab_factory()
    sid = lab.start_session(assigned_time=3)  # 30 KB at 115200 baud needs ~6 s
    task = lab.delay(sid, "program_device", hex_30k).join(timeout=10)
    assert task.failed and task.error["class"] == "NotEnoughTimeError", task.error
    assert "left" in task.error["message"]


def test_a_disposing_session_starts_no_device_task(devlab_factory):
    lab = devlab_factory(dispose_timeout=10)
    sid = lab.start_session()
    running = lab.delay(sid, "stubborn", 4.0)
    while running.retrieve().submitted:
        time.sleep(0.02)
    with lab.app.app_context():  # as in the RLMS view or the cleaner
        outcome = lab.state.dispose(sid, "test")  # revoke, stop, still busy
    assert outcome.retry_in, outcome
    assert lab.rlms.status(sid) > 0  # the RLMS sees a positive status while dispose runs
    with pytest.raises(DeviceUnavailableError, match="ending"):
        lab.delay(sid, "light")


def test_dispose_ends_at_its_deadline_with_a_task_that_ignores_stopping(devlab_factory):
    lab = devlab_factory(dispose_timeout=1.5)
    sid = lab.start_session()
    task = lab.delay(sid, "stubborn", 6.0)
    while task.retrieve().submitted:
        time.sleep(0.02)
    started = time.monotonic()
    lab.rlms.dispose(sid)
    took = time.monotonic() - started
    assert took < 5, took
    assert task.retrieve().failed and task.error["code"] == "dispose-timeout", task.error
    assert lab.last_safe("led")["ok"]


@pytest.mark.slow
def test_a_board_unplugged_mid_task_fails_the_task_then_the_next_session_works(
    devlab_factory, hex_30k, hex_small
):
    unplug = "sim:arduino?baud=115200&fault=disconnect@50"
    lab = devlab_factory(devices={"board": unplug, "led": "gpio:17?safe=0&factory=mock"})
    sid = lab.start_session()
    task = lab.delay(sid, "program_device", hex_30k).join(timeout=60)
    assert task.failed and task.error["class"] == "DeviceIOError", task.error
    lab.rlms.dispose(sid)
    assert lab.last_safe("board")["ok"]
    nxt = lab.start_session()
    assert lab.delay(nxt, "program_device", hex_small).join(timeout=30).done


def test_a_direct_call_in_the_holding_process_gets_the_devices(devlab_factory):
    lab = devlab_factory()
    with lab.app.app_context():
        assert lab.tasks["light"]() is True  # no .delay(): this process holds the LED
    other = devlab_factory(threads=0, start=False, devices={"led": "gpio:18?factory=mock"})
    with other.app.app_context(), pytest.raises(NoContextError, match="delay"):
        other.tasks["light"]()


def test_require_time_in_views(devlab_factory):
    from labruntime import NotEnoughTimeError, require_time

    lab = devlab_factory(threads=0, start=False)
    sid = lab.start_session(assigned_time=60)
    ctx = lab.as_session(sid)
    try:
        assert 50 < require_time(10, margin=2) <= 60
        with pytest.raises(NotEnoughTimeError, match="needs about 70.0 s"):
            require_time(70, margin=0)
        with pytest.raises(ValueError, match="seconds >= 0"):
            require_time(-1)
    finally:
        ctx.pop()
    ctx = lab.as_session(None)  # no session: nothing to refuse
    try:
        assert require_time(1e9) == float("inf")
    finally:
        ctx.pop()


class _FlakyLamp(Device):
    """A lamp whose safe state cannot be reached once ``broken`` (a stuck relay)."""

    scheme = "flakylamp"
    broken = False

    def _drive_safe(self) -> dict:
        if _FlakyLamp.broken:
            raise DeviceIOError("the relay does not release")
        return {"on": False}

    def _close(self) -> None:
        pass

    def on(self) -> None:
        pass

    def off(self) -> None:
        pass

    @property
    def value(self) -> bool:
        return False


@pytest.fixture
def flaky_scheme():
    register_scheme("flakylamp", lambda url, *, name=None, **kw: _FlakyLamp(url, name=name))
    _FlakyLamp.broken = False
    try:
        yield _FlakyLamp
    finally:
        unregister_scheme("flakylamp")


def test_a_device_that_failed_to_reach_safe_admits_nothing_until_safe_again(
    devlab_factory, flaky_scheme
):
    lab = devlab_factory(devices={"led": "flakylamp:1"})
    sid = lab.start_session()
    assert lab.delay(sid, "light").join(timeout=10).done
    flaky_scheme.broken = True
    lab.rlms.dispose(sid)  # the session still ends; the report says not safe
    assert lab.last_safe("led")["ok"] is False
    nxt = lab.start_session()
    with pytest.raises(DeviceUnavailableError, match="did not reach their safe state"):
        lab.delay(nxt, "light")
    flaky_scheme.broken = False
    lab.state.devices.holder.safe("led")  # e.g. a worker restart
    assert lab.delay(nxt, "light").join(timeout=10).done


@pytest.mark.slow
def test_disposing_one_session_leaves_another_sessions_operation_running(
    devlab_factory, hex_30k, hex_small
):
    """Session A used the board and ends (dispose, or the cleaner) while session B programs
    it: B's operation is not cancelled; the board goes safe when B ends."""
    lab = devlab_factory()
    first = lab.start_session()
    assert lab.delay(first, "program_device", hex_small).join(timeout=30).done
    second = lab.start_session()
    task = lab.delay(second, "program_device", hex_30k)
    deadline = time.monotonic() + 30
    while not (task.retrieve().progress or {}).get("done") and time.monotonic() < deadline:
        time.sleep(0.02)
    lab.rlms.dispose(first)
    assert task.join(timeout=30).done, task.error
    lab.redis.delete(f"{lab.base}:device:board:safe")
    lab.rlms.dispose(second)
    assert lab.last_safe("board")["ok"]
