"""The deployed benchmark lab, for gunicorn and for the separate task worker (either library).

    BENCH_SIDE=labruntime|weblablib|bare BENCH_REDIS_URL=... BENCH_REDIS_BASE=... \\
        gunicorn -w 2 -k gthread --threads 4 lab_app:app
    labruntime --app lab_app:app loop           # labruntime's worker
    flask --app lab_app:app weblab loop         # weblablib's worker (its venv)

The lab is deployed as config/ describes it: no task thread in the web workers
(WEBLAB_TASK_THREADS_PROCESS = 0), the cleaner thread on in the web workers, tasks in the
separate worker. ``BENCH_SIDE=bare`` is a Flask app with no extension at all: ``/bare`` (the
floor of an HTTP request). Every lab also has ``/bare`` (no decorator), ``/lab/read`` and
``/lab/write`` (``@requires_active``), the tasks ``stamp`` (returns the time its body
started), ``noop`` and ``until_stopped``, and the views ``/lab/delay/<task>`` and
``/lab/task/<id>`` (see :func:`add_task_views`). ``BENCH_TIMEOUT``: WEBLAB_TIMEOUT (default 15 s);
``BENCH_SESSION_CACHE=0``: WEBLAB_SESSION_CACHE = False (labruntime reads Redis at every request).
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import add_session_views, lab_config
from flask import Flask, request


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


def add_task_views(app: Flask, weblab: Any, requires_active: Any, tasks: dict[str, Any]) -> None:
    """The student's side of tasks, with the public API only: ``/lab/delay/<name>?count=N``
    (delays N tasks; the time before the first ``.delay()`` and the ids) and
    ``/lab/task/<id or name>`` (``weblab.get_task``: status and result), ``/lab/tasks``
    (``len(weblab.tasks)``)."""

    @app.route("/lab/delay/<name>")
    @requires_active
    def delay(name: str) -> dict[str, Any]:
        count = int(request.args.get("count", "1"))
        before = time.time()
        ids = [tasks[name].delay().task_id for _ in range(count)]
        return {"before": before, "ids": ids}

    @app.route("/lab/tasks")
    @requires_active
    def task_count() -> dict[str, Any]:
        return {"tasks": len(weblab.tasks)}

    @app.route("/lab/task/<task_id>")
    @requires_active
    def task_status(task_id: str) -> Any:
        task = weblab.get_task(task_id)
        if task is None:
            return {"status": "missing"}, 404
        return {"status": task.status, "result": task.result if task.done else None}


def make_app(side: str, url: str, base: str, *, deployed: bool = True, **extra: Any) -> Flask:
    """The lab of ``side``; ``deployed=False``: no background thread at all (a driver's app)."""
    app = Flask(f"{side}_bench_lab")

    @app.route("/bare")
    def bare() -> str:
        return "hello bare"

    if side == "bare":
        return app
    threads = {"WEBLAB_NO_THREAD": False, "WEBLAB_TASK_THREADS_PROCESS": 0}
    if deployed:
        threads["WEBLAB_AUTOCLEAN_THREAD"] = True
    else:
        threads = {"WEBLAB_NO_THREAD": True}
    config = lab_config(url, base, **threads)
    config["WEBLAB_TIMEOUT"] = float(os.environ.get("BENCH_TIMEOUT", "15"))
    if os.environ.get("BENCH_SESSION_CACHE") == "0":  # labruntime: every request reads Redis
        config["WEBLAB_SESSION_CACHE"] = False
    config.update(extra)
    app.config.update(config)
    if side == "labruntime":
        from labruntime import WebLab, current_task_stopping, requires_active, weblab_user
    else:
        from weblablib import WebLab, current_task_stopping, requires_active, weblab_user
    weblab = WebLab(app)
    add_session_views(app, weblab, requires_active, weblab_user)
    tasks = define_tasks(weblab, lambda: bool(current_task_stopping))
    add_task_views(app, weblab, requires_active, tasks)
    app.extensions["bench_weblab"] = weblab
    return app


def _from_environment() -> Flask | None:
    side = os.environ.get("BENCH_SIDE")
    if not side:
        return None
    return make_app(side, os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_REDIS_BASE", "lab"))


app = _from_environment()
