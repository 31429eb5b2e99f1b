"""Device workers: `labruntime loop --device ...` subprocesses hold the devices and run their
tasks; leases, busy devices, dispose through the control channel, SIGTERM and kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labruntime import InvalidConfigError
from labruntime.devices.option import parse_device_options
from labruntime.drivers.sim.arduino import SimulatedArduino

BOARD = "sim:arduino?baud=115200&part=atmega328p"
LED = "gpio:17?safe=0&factory=mock"


def wait_progress(task, key: str = "done", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (task.retrieve().progress or {}).get(key):
        assert time.monotonic() < deadline, f"no progress: {task.status} {task.error}"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_worker_runs_the_device_tasks_and_drives_safe_at_dispose(
    devlab_factory, worker_factory, hex_small
):
    lab = devlab_factory(threads=0, start=False)
    worker = worker_factory("loop", "--device", "board", "--device", "led")
    worker.wait_for("holding device(s) board, led")
    holder = lab.holder("board")
    assert holder["pid"] == worker.proc.pid and holder["token"] >= 1
    sid = lab.start_session()
    task = lab.delay(sid, "program_and_light", hex_small).join(timeout=30)
    assert task.done and task.result["verified"], task.error
    assert task.progress["fraction"] == 1.0
    lab.redis.delete(f"{lab.base}:device:led:safe", f"{lab.base}:device:board:safe")
    lab.rlms.dispose(sid)  # the web process asks the worker, which answers with its reports
    for name in ("board", "led"):
        report = lab.last_safe(name)
        assert report is not None and report["ok"], (name, report)
    assert lab.last_safe("led")["state"]["value"] == 0
    assert worker.terminate() == 0
    assert lab.holder("board") is None and lab.holder("led") is None  # released


@pytest.mark.slow
def test_a_second_worker_for_a_held_device_is_refused_naming_the_holder(worker_factory):
    first = worker_factory("loop", "--device", "led")
    first.wait_for("holding device(s) led")
    second = worker_factory("loop", "--device", "led")
    assert second.proc.wait(timeout=20) == 1
    out = second.output()
    assert "led" in out and str(first.proc.pid) in out and "held by" in out, out
    assert first.proc.poll() is None


@pytest.mark.slow
def test_the_file_lease_refuses_a_second_holder_outside_this_redis(worker_factory, redis_base):
    with SimulatedArduino(baudrate=115200) as board:  # one port, two labs (two Redis bases)
        devices = {"board": f"stk500:{board.start()}?baudrate=115200&reset=none"}
        first = worker_factory("loop", "--device", "board", devices=devices)
        first.wait_for("holding device(s) board")
        other = worker_factory(
            "loop", "--device", "board", devices=devices, LAB_REDIS_BASE=redis_base + "x"
        )
        assert other.proc.wait(timeout=20) == 1
        out = other.output()
        assert f"pid {first.proc.pid}" in out, out
        first.terminate()


@pytest.mark.slow
def test_sigterm_stops_the_task_cancels_programming_and_releases(
    devlab_factory, worker_factory, hex_30k
):
    lab = devlab_factory(threads=0, start=False)
    worker = worker_factory("loop", "--device", "board")
    worker.wait_for("holding device(s) board")
    sid = lab.start_session()
    task = lab.delay(sid, "program_device", hex_30k)
    wait_progress(task)
    assert worker.terminate(timeout=30) == 0
    assert task.retrieve().failed and task.error["class"] == "OperationCancelled", task.error
    assert lab.holder("board") is None
    assert lab.last_safe("board")["ok"]


@pytest.mark.slow
def test_kill_9_mid_program_then_the_next_worker_recovers_the_board(
    devlab_factory, worker_factory, hex_30k, hex_small
):
    with SimulatedArduino(baudrate=115200) as board:  # the board outlives its holders
        url = f"stk500:{board.start()}?baudrate=115200&reset=none"
        devices = {"board": url, "led": LED}
        lab = devlab_factory(threads=0, start=False, devices=devices)
        first = worker_factory("loop", "--device", "board", devices=devices)
        first.wait_for("holding device(s) board")
        sid = lab.start_session()
        task = lab.delay(sid, "program_device", hex_30k)
        wait_progress(task)
        first.kill()
        token = lab.holder("board")["token"]  # the dead holder's lease is still there
        second = worker_factory("loop", "--device", "board", devices=devices)
        second.wait_for("holding device(s) board")  # takes over at once: same host, dead pid
        assert "previous holder died" in second.output() or "gone" in second.output()
        assert lab.holder("board")["token"] == token + 1  # a new fencing token
        opened = lab.last_safe("board")
        assert opened["ok"] and opened["at_open"] and opened["token"] == token + 1
        assert opened["worker"] != lab.holder("led")
        lab.rlms.dispose(sid)
        nxt = lab.start_session()
        again = lab.delay(nxt, "program_device", hex_small).join(timeout=30)
        assert again.done and again.result["verified"], again.error


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("board",), {"board": BOARD}),
        (("board=sim:arduino?baud=57600",), {"board": "sim:arduino?baud=57600"}),
        (("led", "board"), {"led": LED, "board": BOARD}),
    ],
)
def test_device_options(values, expected):
    assert parse_device_options({"board": BOARD, "led": LED}, values) == expected


def test_a_bare_url_binds_to_the_only_device():
    assert parse_device_options({"board": BOARD}, ("sim:arduino?baud=57600",)) == {
        "board": "sim:arduino?baud=57600"
    }


@pytest.mark.parametrize(
    ("configured", "values", "words"),
    [
        ({"board": BOARD, "led": LED}, ("sim:arduino",), ["bare URL", "NAME=URL"]),
        ({"board": BOARD}, ("nothing",), ["'nothing'", "WEBLAB_DEVICES"]),
        ({"board": BOARD}, ("board=nosuch:x",), ["board=nosuch:x"]),
        ({"board": BOARD}, ("board", "board"), ["twice"]),
        ({"board": BOARD}, ("lamp=gpio:17",), ["'lamp'", "WEBLAB_DEVICES", "add"]),
        ({}, ("lamp=gpio:17",), ["'lamp'", "none"]),
    ],
)
def test_bad_device_options_are_named(configured, values, words):
    with pytest.raises(InvalidConfigError) as info:
        parse_device_options(configured, values)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.slow
def test_run_tasks_with_a_device_holds_drains_and_releases(devlab_factory, worker_factory):
    lab = devlab_factory(threads=0, start=False)
    worker = worker_factory("run-tasks", "--device", "led")
    assert worker.proc.wait(timeout=30) == 0, worker.output()
    assert "holding device(s) led" in worker.output()
    assert "the queue is empty" in worker.output()
    assert lab.holder("led") is None and lab.last_safe("led")["ok"]


@pytest.mark.slow
def test_device_status_names_holders_and_the_command_for_the_others(
    devlab_factory, worker_factory, redis_url, redis_base
):
    lab = devlab_factory(threads=0, start=False)
    worker = worker_factory("loop", "--device", "led")
    worker.wait_for("holding device(s) led")
    env = {**os.environ, "LAB_REDIS_URL": redis_url, "LAB_REDIS_BASE": redis_base}
    env["LAB_DEVICES"] = json.dumps({"board": BOARD, "led": LED})
    devlab = str(Path(__file__).with_name("devlab.py"))
    labruntime = str(Path(sys.executable).parent / "labruntime")
    out = subprocess.run(
        [labruntime, "--app", devlab, "device", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    status = json.loads(out)
    assert status["led"]["holder"]["pid"] == worker.proc.pid
    assert status["led"]["last_safe"]["ok"] and status["led"]["last_safe"]["at_open"]
    assert status["board"]["holder"] is None
    assert status["board"]["start"].endswith("loop --device board")
    assert lab.holder("led")["pid"] == worker.proc.pid


@pytest.mark.slow
def test_a_worker_whose_lease_another_holder_took_exits_1_naming_the_device(
    worker_factory, redis_url, redis_base
):
    import redis

    worker = worker_factory("loop", "--device", "led")
    worker.wait_for("holding device(s) led")
    other = {"worker": "elsewhere:1:x", "token": 99, "host": "elsewhere", "pid": 1, "argv": []}
    client = redis.Redis.from_url(redis_url)
    try:  # what a stall past the lease then a second worker's take-over leave in Redis
        client.set(f"{redis_base}:device:led", json.dumps(other), px=10000)
        assert worker.proc.wait(timeout=20) == 1, worker.output()
    finally:
        client.close()
    out = worker.output()
    assert "taken by another holder" in out and "led" in out, out
