"""The deployed benchmark lab, for gunicorn and for the separate task worker (either library).

    BENCH_SIDE=labruntime|weblablib|bare BENCH_REDIS_URL=... BENCH_REDIS_BASE=... \\
        gunicorn -w 2 -k gthread --threads 4 lab_app:app
    labruntime --app lab_app:app loop           # labruntime's worker
    flask --app lab_app:app weblab loop         # weblablib's worker (its venv)

The lab is deployed as config/ describes it: no task thread in the web workers
(WEBLAB_TASK_THREADS_PROCESS = 0), the cleaner thread on in the web workers, tasks in the
separate worker. ``BENCH_SIDE=bare`` is a Flask app with no extension at all: ``/bare`` (the
floor of an HTTP request). Every lab also has ``/bare`` (no decorator), ``/lab/read`` and
``/lab/write`` (``@requires_active``), and the tasks ``stamp`` (returns the time its body
started) and ``noop``. ``BENCH_TIMEOUT``: WEBLAB_TIMEOUT (default 15 s).
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import add_session_views, lab_config
from flask import Flask


def define_tasks(weblab: Any) -> dict[str, Any]:
    @weblab.task()
    def stamp() -> float:
        return time.time()

    @weblab.task()
    def noop() -> None:
        return None

    return {"stamp": stamp, "noop": noop}


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
    config.update(extra)
    app.config.update(config)
    if side == "labruntime":
        from labruntime import WebLab, requires_active, weblab_user
    else:
        from weblablib import WebLab, requires_active, weblab_user
    weblab = WebLab(app)
    add_session_views(app, weblab, requires_active, weblab_user)
    app.extensions["bench_tasks"] = define_tasks(weblab)
    return app


def _from_environment() -> Flask | None:
    side = os.environ.get("BENCH_SIDE")
    if not side:
        return None
    return make_app(side, os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_REDIS_BASE", "lab"))


app = _from_environment()
