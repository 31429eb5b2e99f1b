"""The benchmark lab written with weblablib; runs inside ``bench/.weblablib-venv`` only.

``python weblablib_lab.py <redis_url> <redis_base> [sessions]`` runs the session workload
and prints its figures as one JSON line. The labruntime twin is in bench_sessions.py.
"""

from __future__ import annotations

import json
import sys

from flask import Flask
from session_workload import PASSWORD, USER, run
from weblablib import WebLab, requires_active, weblab_user


def make_app(redis_url: str, redis_base: str) -> Flask:
    app = Flask("weblablib_bench")
    app.config.update(
        SECRET_KEY="bench",
        WEBLAB_USERNAME=USER,
        WEBLAB_PASSWORD=PASSWORD,
        WEBLAB_REDIS_URL=redis_url,
        WEBLAB_REDIS_BASE=redis_base,
        WEBLAB_NO_THREAD=True,
    )
    weblab = WebLab(app)

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab/read"

    @weblab.on_start
    def on_start(client_data, server_data):  # noqa: ANN001, ANN202
        return {"visits": 0}

    @weblab.on_dispose
    def on_dispose() -> None:
        pass

    @app.route("/lab/read")
    @requires_active
    def read() -> str:
        return f"hello {weblab_user.username}"

    @app.route("/lab/write")
    @requires_active
    def write() -> str:
        weblab_user.data["visits"] = weblab_user.data.get("visits", 0) + 1
        return f"visit {weblab_user.data['visits']}"

    return app


if __name__ == "__main__":
    url, base = sys.argv[1], sys.argv[2]
    sessions = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    print(json.dumps(run(make_app(url, base), url, sessions)))
