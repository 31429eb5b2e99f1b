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

from _common import Row, add_session_views, comparison_table, lab_config, redis_url  # noqa: E402
from session_workload import run  # noqa: E402
from weblablib_env import run_weblablib  # noqa: E402

from labruntime import WebLab, requires_active, weblab_user  # noqa: E402


def make_app(redis_url: str, redis_base: str, instance: str) -> Flask:
    app = Flask("labruntime_bench", instance_path=instance)
    app.config.update(lab_config(redis_url, redis_base))
    add_session_views(app, WebLab(app), requires_active, weblab_user)
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
    rows = [Row(section, key, label.format(n=ours["sessions"])) for section, key, label in ROWS]
    return comparison_table(rows, ours, theirs, width=52, digits=2)


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
    with redis_url() as url, tempfile.TemporaryDirectory(prefix="lrbench") as instance:
        base = f"bench-{uuid.uuid4().hex[:8]}"
        ours = run(make_app(url, base + "-lr", instance), url, options.sessions)
        theirs = None
        if not options.skip_weblablib:
            theirs = run_weblablib("weblablib_lab.py", url, base + "-wl", str(options.sessions))
    print(f"Session layer, {options.sessions} live sessions, Redis {url.split('://')[0]}:")
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
