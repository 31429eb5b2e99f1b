"""The benchmark lab written with weblablib; runs inside ``bench/.weblablib-venv`` only.

``python weblablib_lab.py <redis_url> <redis_base> [sessions]`` runs the session workload
and prints its figures as one JSON line. The labruntime twin is in bench_sessions.py.
"""

from __future__ import annotations

import json
import sys

from _common import add_session_views, lab_config
from flask import Flask
from session_workload import run
from weblablib import WebLab, requires_active, weblab_user


def make_app(redis_url: str, redis_base: str) -> Flask:
    app = Flask("weblablib_bench")
    app.config.update(lab_config(redis_url, redis_base))
    weblab = WebLab(app)
    add_session_views(app, weblab, requires_active, weblab_user)

    @weblab.on_dispose
    def on_dispose() -> None:
        pass

    return app


if __name__ == "__main__":
    url, base = sys.argv[1], sys.argv[2]
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    print(json.dumps(run(make_app(url, base), url, sessions)))
