"""Session layer benchmark: labruntime vs weblablib, same Redis, same machine.

    .venv/bin/python bench/bench_sessions.py [--sessions 500] [--skip-weblablib]
    (or bash bench/run for every benchmark; BENCH_SKIP_WEBLABLIB=1 skips weblablib)

Figures (medians over 20 runs): bulk status of N live sessions (server time from
``INFO commandstats``, wall time from the RLMS side, Redis commands and round trips), one
session's status, and a ``@requires_active`` student view that reads (``read``) or changes
(``write``) ``weblab_user.data``. Redis: an embedded server in a temporary folder, or
``$WEBLAB_REDIS_URL``. Prints a table with the ratio weblablib / labruntime.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_workload import PASSWORD, USER, run  # noqa: E402
from weblablib_env import run_weblablib  # noqa: E402

from labruntime import WebLab, requires_active, weblab_user  # noqa: E402
from labruntime.embedded import EmbeddedRedis  # noqa: E402


def make_app(redis_url: str, redis_base: str, instance: str) -> Flask:
    app = Flask("labruntime_bench", instance_path=instance)
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
    def on_start(client_data: dict, server_data: dict) -> dict:
        return {"visits": 0}

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


ROWS = [
    ("bulk_status", "server_ms", "bulk status of {n}: server ms"),
    ("bulk_status", "wall_ms", "bulk status of {n}: wall ms"),
    ("bulk_status", "round_trips", "bulk status of {n}: round trips"),
    ("bulk_status", "commands", "bulk status of {n}: commands"),
    ("status", "round_trips", "one status: round trips"),
    ("status", "wall_ms", "one status: wall ms"),
    ("view_read", "round_trips", "@requires_active view, read: round trips"),
    ("view_read", "commands", "@requires_active view, read: commands"),
    ("view_read", "wall_ms", "@requires_active view, read: wall ms"),
    ("view_write", "round_trips", "@requires_active view, data changed: round trips"),
    ("view_write", "commands", "@requires_active view, data changed: commands"),
    ("view_write", "wall_ms", "@requires_active view, data changed: wall ms"),
]


def table(ours: dict[str, Any], theirs: dict[str, Any] | None) -> str:
    n = ours["sessions"]
    lines = [f"{'':52} {'labruntime':>11} {'weblablib':>11} {'ratio':>7}"]
    for section, key, label in ROWS:
        a = ours[section][key]
        b = theirs[section][key] if theirs else None
        ratio = f"{b / a:6.1f}x" if b is not None and a else "      -"
        b_text = f"{b:11.2f}" if b is not None else f"{'-':>11}"
        lines.append(f"{label.format(n=n):52} {a:11.2f} {b_text} {ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument(
        "--skip-weblablib",
        action="store_true",
        default=os.environ.get("BENCH_SKIP_WEBLABLIB", "") not in ("", "0"),
        help="labruntime only (also: BENCH_SKIP_WEBLABLIB=1)",
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lrbench") as tmp:
        server = None
        url = os.environ.get("WEBLAB_REDIS_URL")
        if not url:
            server = EmbeddedRedis(Path(tmp) / "redis")
            url = server.ensure_running()
        try:
            base = f"bench-{uuid.uuid4().hex[:8]}"
            ours = run(make_app(url, base + "-lr", tmp), url, options.sessions)
            theirs = None
            if not options.skip_weblablib:
                theirs = run_weblablib("weblablib_lab.py", url, base + "-wl", str(options.sessions))
        finally:
            if server is not None:
                server.stop()
    print(f"Session layer, {options.sessions} live sessions, Redis {url.split('://')[0]}:")
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
