"""The config of the test suite's labs, in one place.

Tests import it relatively (``from .._labs import lab_app``); lab files that subprocesses also
load by path (``flask --app tests/tasks/labapp.py``) put ``tests/`` on ``sys.path`` and import
``_labs``. It needs Flask only.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

USER, PASSWORD = "rlms", "s3cret-rlms-password"  # the RLMS credentials of every test lab


def lab_config(redis_url: str, redis_base: str, **overrides: Any) -> dict[str, Any]:
    """A test lab's Flask config: RLMS ``USER``/``PASSWORD``, the test's Redis prefix, and no
    background thread started by ``WebLab(app)`` (a test starts what it needs)."""
    return {
        "SECRET_KEY": "test-secret-of-the-suite",
        "WEBLAB_USERNAME": USER,
        "WEBLAB_PASSWORD": PASSWORD,
        "WEBLAB_REDIS_URL": redis_url,
        "WEBLAB_REDIS_BASE": redis_base,
        "WEBLAB_AUTOCLEAN_THREAD": False,
        "WEBLAB_TASK_THREADS_PROCESS": 0,
        **overrides,
    }


def runner_threads(threads: int) -> dict[str, Any]:
    """Config of a lab process running ``threads`` task runner threads and the cleaner;
    0: no background thread at all (another process runs the tasks)."""
    return {
        "WEBLAB_TASK_THREADS_PROCESS": threads,
        "WEBLAB_NO_THREAD": threads == 0,
        "WEBLAB_AUTOCLEAN_THREAD": threads > 0,
    }


def lab_app(
    name: str, redis_url: str, redis_base: str, instance_path: str | None = None, **overrides: Any
) -> Flask:
    """A Flask app configured by :func:`lab_config` (create the ``WebLab`` on it next)."""
    app = Flask(name, instance_path=instance_path)
    app.config.update(lab_config(redis_url, redis_base, **overrides))
    return app
