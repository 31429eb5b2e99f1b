"""A lab app for the task tests (also loaded by subprocesses: ``flask --app labapp.py``).

Environment: LAB_REDIS_URL, LAB_REDIS_BASE, LAB_THREADS (runner threads per process, default 0),
LAB_DISPOSE_TIMEOUT. Tasks count their runs in Redis (``<base>:test:runs``, a hash by task id).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import redis
from flask import Flask, jsonify, session

from labruntime import WebLab, current_task, current_task_stopping, weblab_user
from labruntime.cli.tasks import loop_command, run_tasks_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for _labs
from _labs import lab_config, runner_threads  # noqa: E402


def create_app(
    redis_url: str | None = None,
    redis_base: str | None = None,
    threads: int | None = None,
    dispose_timeout: float | None = None,
) -> tuple[Flask, WebLab, dict[str, Any]]:
    redis_url = redis_url or os.environ["LAB_REDIS_URL"]
    redis_base = redis_base or os.environ["LAB_REDIS_BASE"]
    if threads is None:
        threads = int(os.environ.get("LAB_THREADS", "0"))
    if dispose_timeout is None:
        dispose_timeout = float(os.environ.get("LAB_DISPOSE_TIMEOUT", "60"))
    app = Flask(__name__)
    config = lab_config(redis_url, redis_base, WEBLAB_DISPOSE_TIMEOUT=dispose_timeout)
    app.config.update(config, **runner_threads(threads))
    weblab = WebLab(app)
    counter = redis.Redis.from_url(redis_url, decode_responses=True)
    runs_key = f"{redis_base}:test:runs"
    tasks: dict[str, Any] = {}

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab"

    def task(**kw: Any):
        def deco(func):
            wrapper = weblab.task(**kw)(func)
            tasks[func.__name__] = wrapper
            return wrapper

        return deco

    @task()
    def add(a: int, b: int) -> int:
        return a + b

    @task()
    def noop() -> None:
        return None

    @task()
    def count_run() -> str:
        counter.hincrby(runs_key, current_task.task_id, 1)
        return current_task.task_id

    @task()
    def whoami() -> dict[str, Any]:
        return {
            "username": weblab_user.username,
            "time_left": weblab_user.time_left,
            "session": current_task.session_id,
        }

    @task()
    def until_stopped(limit: float = 30.0) -> str:
        if current_task:
            counter.hincrby(runs_key, current_task.task_id, 1)
        deadline = time.monotonic() + limit
        reads = 0
        while time.monotonic() < deadline:
            reads += 1
            if current_task_stopping:
                return f"stopped after {reads} reads"
            time.sleep(0.001)
        return "timeout"

    @task()
    def ignore_stop(seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    @task()
    def boom() -> None:
        raise ValueError("boom happened")

    @task()
    def bad_result() -> Any:
        return {1, 2}

    @task()
    def join_self() -> str:
        try:
            current_task.join()
        except RuntimeError as error:
            return f"RuntimeError: {error}"
        return "no error"

    @task()
    def progress() -> str:
        current_task.data["step"] = 1
        current_task.store()
        time.sleep(0.3)
        current_task.data["step"] = 2
        return "ok"

    @task(pool="device:sim")
    def on_device() -> str:
        return "ran on the device's worker"

    @task(unique="global")
    def only_one(limit: float = 30.0) -> str:
        return until_stopped.func(limit)

    @task(unique="user")
    def one_per_user(limit: float = 30.0) -> str:
        return until_stopped.func(limit)

    @app.route("/lab")
    def lab() -> str:
        return "lab"

    @app.route("/test/enqueue/<session_id>/<int:count>")
    def enqueue(session_id: str, count: int) -> Any:
        session[app.config.get("WEBLAB_SESSION_ID_NAME", "weblab_session_id")] = session_id
        ids = [count_run.delay().task_id for _ in range(count)]
        return jsonify(ids)

    app.cli.add_command(loop_command)
    app.cli.add_command(run_tasks_command)
    return app, weblab, tasks


if os.environ.get("LAB_REDIS_URL"):
    app, weblab, tasks = create_app()
