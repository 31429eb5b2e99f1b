"""The seed's "Processes vs. threads": no threads in the web process, tasks and the cleaner in
separate processes (`flask weblab run-tasks`, `clean-expired-users`, `loop`), over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import LABS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SEED = str(LABS / "seed_lab.py")


def _cli(*args: str, flask: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [str(BIN / "flask"), "--app", SEED, "weblab"] if flask else [
        str(BIN / "labruntime"), "--app", SEED]  # fmt: skip
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _student(lab):
    started = lab.rlms.start({}, assigned_time=120)
    browser = lab.browser()
    assert browser.enter(started.url).status == 200
    return started, browser


def _status(browser, task_id):
    return browser.get(f"/lab/task/{task_id}").json()


@pytest.fixture
def no_threads(monkeypatch):
    monkeypatch.setenv("LAB_TASK_THREADS", "0")
    monkeypatch.setenv("LAB_AUTOCLEAN", "False")


@pytest.mark.parametrize("flask", [True, False], ids=["flask weblab", "labruntime"])
def test_run_tasks_runs_what_the_web_process_queued(serve_lab, no_threads, flask):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab)
    task_id = browser.post("/lab/program", {"code": "12345"}).json()["task_id"]
    time.sleep(0.3)
    assert _status(browser, task_id)["status"] == "submitted"  # nobody runs it in the web process
    result = _cli("run-tasks", flask=flask)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    task = _status(browser, task_id)
    assert (task["status"], task["result"]) == ("done", 5)


def test_clean_expired_users_ends_a_student_who_left(serve_lab, no_threads, monkeypatch):
    monkeypatch.setenv("LAB_TIMEOUT", "1")
    lab = serve_lab("seed_lab")
    started, _ = _student(lab)
    time.sleep(1.5)  # the student stopped polling
    assert lab.rlms.status(started.session_id) == -1
    result = _cli("clean-expired-users")
    assert result.returncode == 0, result.stderr
    assert "1 session" in result.stdout
    assert [e["event"] for e in lab.events()] == ["start", "dispose"]
    assert lab.rlms.dispose(started.session_id) == {"message": "Deleted"}  # as weblablib


def test_loop_runs_tasks_and_exits_0_on_sigterm(serve_lab, no_threads):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab)
    loop = subprocess.Popen(
        [str(BIN / "flask"), "--app", SEED, "weblab", "loop", "--threads", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        task_id = browser.post("/lab/program", {"code": "abc"}).json()["task_id"]
        deadline = time.monotonic() + 20
        while not _status(browser, task_id)["finished"]:
            assert time.monotonic() < deadline, "the loop did not run the task"
            time.sleep(0.05)
        assert _status(browser, task_id)["result"] == 3
        calibration = browser.post("/lab/calibrate", {"seconds": "60"}).json()["task_id"]
        while _status(browser, calibration)["status"] != "running":
            assert time.monotonic() < deadline, "the loop did not start the calibration"
            time.sleep(0.05)
        loop.send_signal(signal.SIGTERM)
        out, err = loop.communicate(timeout=30)
        assert loop.returncode == 0, err
        assert "Traceback" not in err
        stopped = _status(browser, calibration)
        assert (stopped["status"], stopped["result"]) == ("done", "stopped")
    finally:
        if loop.poll() is None:
            os.kill(loop.pid, signal.SIGKILL)
            loop.wait(timeout=10)
