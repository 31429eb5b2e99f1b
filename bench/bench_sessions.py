"""Session layer benchmark: labruntime vs weblablib, same Redis, same machine.

    .venv/bin/python bench/bench_sessions.py [--sessions 500] [--rounds 5]
    (or bash bench/run for every benchmark; BENCH_SKIP_WEBLABLIB=1 skips weblablib)

Figures: bulk status of N live sessions and one session's status (the RLMS's calls), and a
``@requires_active`` student view that reads (``read``) or changes (``write``)
``weblab_user.data``, through Flask's test client. Per operation: wall ms (median of the
repeats), Redis server CPU ms (``INFO cpu`` deltas, see redis_meter.py), Redis commands, and
round trips counted at the socket by a proxy. Each side runs in its own process, in turns
(labruntime, weblablib, labruntime, ...), ``--rounds`` times. Floors: a Redis PING round trip
on the same socket (wall and server CPU) and a request to a bare Flask view with the same
test client. Redis: an embedded server in a temporary folder, or ``$WEBLAB_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Row,
    bench_section,
    interleave,
    print_table,
    quick_or_full,
    redis_url,
    run_side,
)
from lab_app import make_app  # noqa: E402
from redis_meter import CountingProxy, ping_floor  # noqa: E402
from session_workload import run  # noqa: E402


def measure(side: str, url: str, base: str, sessions: int, repeats: int) -> dict:
    logging.basicConfig(level=logging.WARNING)
    with CountingProxy(url) as proxy:
        app: Flask = make_app(side, url, base, deployed=False)
        counted: Flask = make_app(side, proxy.url, base, deployed=False)
        return run(app, counted, url, proxy, sessions, repeats)


def rows(sessions: int) -> list[Row]:
    table = []
    for op, label, floor in [
        ("bulk_status", f"bulk status of {sessions}", "ping_wall_ms"),
        ("status", "one status", "ping_wall_ms"),
        ("view_read", "@requires_active view, read", "bare_request_ms"),
        ("view_write", "@requires_active view, data changed", "bare_request_ms"),
    ]:
        table += [
            Row(f"{op}.wall_ms", f"{label}: wall ms", floor=floor, digits=3),
            Row(f"{op}.server_cpu_ms", f"{label}: Redis CPU ms", floor="ping_cpu_ms", digits=3),
            Row(f"{op}.round_trips", f"{label}: round trips", floor="one", digits=0),
            Row(f"{op}.commands", f"{label}: commands", digits=0),
        ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=quick_or_full(1, 5))
    parser.add_argument("--repeats", type=int, default=quick_or_full(10, 30))
    parser.add_argument("--side", choices=["labruntime", "weblablib"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.side:  # one side's run, in that side's venv: one JSON line
        figures = measure(options.side, options.url, options.base, options.sessions,
                          options.repeats)  # fmt: skip
        print(json.dumps(figures))
        return
    title = f"Session layer, {options.sessions} live sessions, test client"
    with bench_section(title), redis_url() as url:
        floor = ping_floor(url)
        base = f"bench-{uuid.uuid4().hex[:8]}"

        def one_run(side: str, number: int) -> dict:
            args = ["--url", url, "--base", f"{base}-{side[:2]}{number}"]
            args += ["--sessions", str(options.sessions), "--repeats", str(options.repeats)]
            return run_side(side, "bench_sessions.py", *args)

        results = interleave(one_run, options.rounds)
    bare = sorted(r["bare_request_ms"] for r in results["labruntime"])[0]
    floors = {"ping_wall_ms": floor["wall_ms"], "ping_cpu_ms": floor["server_cpu_ms"]}
    floors |= {"bare_request_ms": bare, "one": 1}
    print(
        f"floors: Redis PING round trip {floor['wall_ms']:.3f} ms wall, "
        f"{floor['server_cpu_ms']:.4f} ms Redis CPU; bare Flask view (test client) {bare:.3f} ms"
    )
    print_table(f"Redis over {url.split('://')[0]}:", rows(options.sessions), results, floors)


if __name__ == "__main__":
    main()
