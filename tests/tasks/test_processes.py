"""Worker processes (`loop`, `run-tasks`) started, stopped and killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers import wait_for

LABAPP = Path(__file__).parent / "labapp.py"
FLASK = [sys.executable, "-m", "flask", "--app", str(LABAPP)]


@pytest.fixture
def spawn(redis_url: str, redis_base: str) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        env = dict(os.environ, LAB_REDIS_URL=redis_url, LAB_REDIS_BASE=redis_base, LAB_THREADS="0")
        proc = subprocess.Popen(
            [*FLASK, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


def test_kill_9_marks_running_task_worker_lost_and_frees_lock(lab_factory, spawn) -> None:
    lab = lab_factory(threads=0, start=False)
    sid = lab.start_session()
    with lab.as_session(sid):
        task = lab.tasks["only_one"].delay(60)
        queued = lab.tasks["add"].delay(2, 2)
        worker = spawn("loop", "--threads", "1")
        wait_for(lambda: lab.runs(task.task_id) == 1, 15, "the loop process to start the task")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        killed_at = time.monotonic()
        spawn("loop", "--threads", "1")  # a live worker reaps the dead one
        wait_for(lambda: task.retrieve().failed, 10, "worker-lost")
        assert time.monotonic() - killed_at < 10
        assert task.error["code"] == "worker-lost"
        assert lab.runs(task.task_id) == 1  # never re-run
        assert queued.join(timeout=5).result == 4  # the queue still flows
        again = lab.tasks["only_one"].delay(0.01)  # the unique lock was released
        assert again.join(timeout=5).done


def test_sigterm_stops_running_tasks_and_exits_0(lab_factory, spawn) -> None:
    lab = lab_factory(threads=0, start=False)
    with lab.as_session(lab.start_session()):
        task = lab.tasks["until_stopped"].delay(60)
        worker = spawn("loop", "--threads", "2")
        wait_for(lambda: task.retrieve().running, 15, "the loop process to start the task")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=10)
        assert worker.returncode == 0, output
        assert task.retrieve().done and task.result.startswith("stopped after")
        later = lab.tasks["add"].delay(1, 1)  # nobody takes tasks any more
        assert not later.join(timeout=0.3, error_on_timeout=False).finished


def test_run_tasks_runs_the_queue_and_exits(lab_factory, spawn) -> None:
    lab = lab_factory(threads=0, start=False)
    with lab.as_session(lab.start_session()):
        tasks = [lab.tasks["add"].delay(i, 1) for i in range(5)]
        stopped = lab.tasks["add"].delay(0, 0)
        stopped.stop()
        proc = spawn("run-tasks", "--threads", "2")
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        assert [t.retrieve().result for t in tasks] == [1, 2, 3, 4, 5]
        # stopped before it started: it still runs, with the flag raised (as in weblablib)
        assert stopped.retrieve().done and stopped.result == 0 and stopped.stopping


def test_join_does_not_wait_forever_on_a_dead_worker(lab_factory, spawn) -> None:
    lab = lab_factory(threads=0, start=False)
    with lab.as_session(lab.start_session()):
        task = lab.tasks["until_stopped"].delay(60)
        worker = spawn("loop", "--threads", "1")
        wait_for(lambda: lab.runs(task.task_id) == 1, 15, "the loop process to start the task")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        start = time.monotonic()
        task.join(timeout=15)  # no live worker anywhere: the waiter itself reaps
        assert time.monotonic() - start < 10
        assert task.failed and task.error["code"] == "worker-lost"


def test_commands_report_an_unreachable_redis_in_one_line(tmp_path) -> None:
    env = dict(os.environ, LAB_REDIS_URL=f"unix://{tmp_path}/none.sock", LAB_REDIS_BASE="x")
    for command in (["run-tasks"], ["loop", "--threads", "1"]):
        done = subprocess.run(
            [*FLASK, *command], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "Redis is unavailable" in done.stderr


def test_sigterm_deadline_then_exit_0_even_if_a_task_ignores_stop(lab_factory, spawn) -> None:
    lab = lab_factory(threads=0, start=False)
    with lab.as_session(lab.start_session()):
        task = lab.tasks["ignore_stop"].delay(30)
        worker = spawn("loop", "--threads", "1", "--stop-timeout", "1")
        wait_for(lambda: task.retrieve().running, 15, "the loop process to start the task")
        start = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=10)
        assert worker.returncode == 0, output
        assert time.monotonic() - start < 5
        assert task.retrieve().failed and task.error["code"] == "worker-lost"
