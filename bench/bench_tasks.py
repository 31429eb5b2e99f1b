"""Task layer benchmark: labruntime vs weblablib 0.5.9, same Redis, same machine.

    .venv/bin/python bench/bench_tasks.py [--samples 300] [--tasks 1000] [--skip-weblablib]

Figures: enqueue-to-start latency of one task at a time (p50, p99; the task records when its
body starts), throughput of no-op tasks queued first then run by 1 and 4 runner threads of
one process, and the time for the RLMS dispose call to return once the session's running task
reaches its stop point (it loops on ``current_task_stopping``). weblablib runs in its own
venv (bench/weblablib_env.py); this same file is its driver there (``--side weblablib``).
Redis: an embedded server in a temporary folder, or ``$WEBLAB_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, comparison_table, lab_config, redis_url  # noqa: E402
from session_workload import HEADERS, start_sessions  # noqa: E402


def define_tasks(weblab: Any, stopping: Any) -> dict[str, Any]:
    @weblab.task()
    def stamp() -> float:
        return time.time()

    @weblab.task()
    def noop() -> None:
        return None

    @weblab.task()
    def until_stopped() -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if stopping():
                return "stopped"
            time.sleep(0.01)
        return "timeout"

    return {"stamp": stamp, "noop": noop, "until_stopped": until_stopped}


def make_app(side: str, url: str, base: str, instance: str) -> tuple[Any, Any, dict[str, Any]]:
    from flask import Flask

    app = Flask(f"{side}_tasks_bench", instance_path=instance)
    app.config.update(
        lab_config(url, base, WEBLAB_AUTOCLEAN_THREAD=False, WEBLAB_TASK_THREADS_PROCESS=0)
    )
    if side == "labruntime":
        from labruntime import WebLab
        from labruntime.task_handle import current_task_stopping
    else:
        from weblablib import WebLab, current_task_stopping
    weblab = WebLab(app)
    weblab.initial_url(lambda: "/lab")
    tasks = define_tasks(weblab, lambda: bool(current_task_stopping))
    return app, weblab, tasks


class Workers:
    """N runner threads of the library under test, started and stopped on demand."""

    def __init__(self, side: str, app: Any, weblab: Any, threads: int) -> None:
        self.side = side
        if side == "labruntime":
            from labruntime.worker import WorkerGroup

            self.group = WorkerGroup(weblab, app, weblab._task_store(app), threads).start()
        else:
            from weblablib.tasks import _TaskRunner

            self.runners = [_TaskRunner(n, weblab, app) for n in range(threads)]
            for runner in self.runners:
                runner.start()

    def stop(self) -> None:
        if self.side == "labruntime":
            self.group.stop(10)
        else:
            for runner in self.runners:
                runner.stop()
            for runner in self.runners:
                runner.join(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency(side: str, app: Any, weblab: Any, tasks: dict[str, Any], samples: int) -> dict:
    workers = Workers(side, app, weblab, 1)
    values = []
    (session_id,) = start_sessions(app, 1)
    try:
        with app.test_request_context("/lab"):
            _bind_session(side, weblab, session_id)
            tasks["stamp"].delay().join(timeout=10)  # warm up
            for _ in range(samples):
                before = time.time()
                task = tasks["stamp"].delay()
                task.join(timeout=30)
                values.append((task.result - before) * 1000)
    finally:
        workers.stop()
    return {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99), "n": samples}


def throughput(side: str, app: Any, weblab: Any, tasks: dict[str, Any], count: int, threads: int):
    (session_id,) = start_sessions(app, 1)
    with app.test_request_context("/lab"):
        _bind_session(side, weblab, session_id)
        handles = [tasks["noop"].delay() for _ in range(count)]
        start = time.perf_counter()
        workers = Workers(side, app, weblab, threads)
        try:
            handles[-1].join(timeout=300)
            for handle in handles:
                handle.join(timeout=300)
            elapsed = time.perf_counter() - start
        finally:
            workers.stop()
    return {"tasks_per_s": count / elapsed, "n": count}


def dispose_time(side: str, app: Any, weblab: Any, tasks: dict[str, Any], rounds: int) -> dict:
    workers = Workers(side, app, weblab, 1)
    client = app.test_client()
    values = []
    try:
        for session_id in start_sessions(app, rounds):
            with app.test_request_context("/lab"):
                _bind_session(side, weblab, session_id)
                task = tasks["until_stopped"].delay()
                deadline = time.monotonic() + 10
                while not task.retrieve().running and time.monotonic() < deadline:
                    time.sleep(0.005)
            before = time.perf_counter()
            while True:
                reply = client.post(
                    f"/weblab/sessions/{session_id}", json={"action": "delete"}, headers=HEADERS
                ).get_json()
                if reply.get("finished") is False:
                    time.sleep(float(reply.get("ask_again", 1)))
                    continue
                break
            values.append((time.perf_counter() - before) * 1000)
            assert reply.get("message") == "Deleted", reply
    finally:
        workers.stop()
    return {"median_ms": statistics.median(values), "n": rounds}


def _bind_session(side: str, weblab: Any, session_id: str) -> None:
    if side == "weblablib":
        from flask import g

        g.session_id = session_id
    else:
        from flask import session

        session["weblab_session_id"] = session_id


def measure(side: str, url: str, base: str, samples: int, count: int) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="lrbench") as tmp:
        app, weblab, tasks = make_app(side, url, base, tmp)
        figures = {
            "latency": latency(side, app, weblab, tasks, samples),
            "throughput_1": throughput(side, app, weblab, tasks, count, 1),
            "throughput_4": throughput(side, app, weblab, tasks, count, 4),
            "dispose": dispose_time(side, app, weblab, tasks, 5),
        }
        if side == "labruntime":
            app.extensions["weblab"].store.close()
    return figures


ROWS = [
    Row("latency", "p50_ms", "enqueue-to-start p50 (ms)"),
    Row("latency", "p99_ms", "enqueue-to-start p99 (ms)"),
    Row("throughput_1", "tasks_per_s", "no-op tasks/s, 1 runner thread", higher_better=True),
    Row("throughput_4", "tasks_per_s", "no-op tasks/s, 4 runner threads", higher_better=True),
    Row("dispose", "median_ms", "dispose returns after stop point (ms)"),
]


def table(ours: dict[str, Any], theirs: dict[str, Any] | None) -> str:
    text = comparison_table(ROWS, ours, theirs, width=42, digits=1)
    return text + "\n(ratio: how many times better labruntime is)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="latency samples (labruntime)")
    parser.add_argument("--weblablib-samples", type=int, default=30, help="weblablib polls 1 s")
    parser.add_argument("--tasks", type=int, default=1000, help="no-op tasks per throughput run")
    parser.add_argument("--skip-weblablib", action="store_true")
    parser.add_argument("--side", choices=["labruntime", "weblablib"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.side:  # a driver run (weblablib's venv): print the figures as one JSON line
        figures = measure(options.side, options.url, options.base, options.samples, options.tasks)
        print(json.dumps(figures))
        return
    from weblablib_env import run_weblablib

    with redis_url() as url:
        base = f"bench-{uuid.uuid4().hex[:8]}"
        ours = measure("labruntime", url, base + "-lr", options.samples, options.tasks)
        theirs = None
        if not options.skip_weblablib:
            args = ["--side", "weblablib", "--url", url, "--base", base + "-wl"]
            args += ["--samples", str(options.weblablib_samples), "--tasks", str(options.tasks)]
            theirs = run_weblablib("bench_tasks.py", *args, timeout=1800)
    print(f"Task layer, Redis over {url.split('://')[0]}:")
    print(f"(latency samples: {options.samples} labruntime, {options.weblablib_samples} weblablib;")
    print(f" throughput: {options.tasks} tasks queued, then the runner threads start)")
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
