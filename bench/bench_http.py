"""HTTP throughput under gunicorn with many students: the student view against a bare view.

    .venv/bin/python bench/bench_http.py        (needs wrk: apt-get install wrk)

Three gunicorn servers (2 workers x 4 threads, gthread, as config/gunicorn.conf.py) on one
Redis: a bare Flask app (``/bare``, no extension: the floor), labruntime's lab and
weblablib's lab (``/lab/read``: ``@requires_active`` returning the user name). 50 students
started through the RLMS API hold their cookie from the link; wrk (2 threads, one keep-alive
connection per student, each request with the next student's cookie) loads one server at a
time, in turns (bare, labruntime, weblablib, the no-cache lab, bare, ...). Figures per run:
requests/s, p50 latency, web CPU per request (utime + stime of the gunicorn master and
workers, from /proc, over the run, divided by the requests served) and Redis commands per
request (INFO stats: a Lua script counts as 1 + the commands it calls). wrk runs on the same
machine, so it takes CPU from the servers: the same tool loads every server, and CPU per
request does not depend on it.

Each student sends requests as fast as wrk can (about 100 a second each): labruntime serves
nearly all of them from the web process's memory (the session is read again only when Redis
signals a change, and the poll is written once a second). A fourth server runs the same lab
with WEBLAB_SESSION_CACHE = False, where every request reads Redis and writes its poll: its
line is the cost of a request that finds nothing remembered (a student polling once a second
or less often).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Row,
    Spread,
    bench_section,
    goal_line,
    interleave,
    print_table,
    quick_or_full,
    redis_info,
    redis_url,
    sides,
)
from deploy import Gunicorn, wrk, wrk_path  # noqa: E402

STUDENTS = 50
NO_CACHE = "labruntime-nocache"  # the same lab with WEBLAB_SESSION_CACHE = False


def redis_commands(url: str) -> int:
    """Commands Redis has processed so far (INFO stats), for commands per request."""
    return int(redis_info(url, "stats")["total_commands_processed"])


def measure(
    server: Gunicorn, path: str, cookies: list[str], seconds: float, url: str
) -> dict[str, float]:
    before, commands = server.cpu_ms(), redis_commands(url)
    result = wrk(server.base_url, path, cookies, seconds, STUDENTS)
    spent = server.cpu_ms() - before
    commands = redis_commands(url) - commands - 2  # less this meter's own INFO calls
    if result["errors"]:
        raise RuntimeError(f"{server.side}: {result['errors']} failed requests on {path}")
    requests = max(1, result["requests"])
    return {
        **result,
        "cpu_ms_per_request": spent / requests,
        "redis_commands_per_request": max(0, commands) / requests,
    }


def main() -> None:
    seconds = quick_or_full(2, 8)
    rounds = quick_or_full(3, 7)
    wrk_path()  # fails early, saying how to install it
    with bench_section(f"HTTP: gunicorn 2x4, {STUDENTS} students, wrk {seconds:.0f} s per run"):
        with redis_url() as url:
            base = f"bench-{uuid.uuid4().hex[:8]}"
            servers = {"bare": Gunicorn("bare", url, base + "-bare")}
            try:
                for side in sides():
                    servers[side] = Gunicorn(side, url, f"{base}-{side[:2]}", BENCH_TIMEOUT="600")
                servers[NO_CACHE] = Gunicorn(
                    "labruntime", url, f"{base}-nc", BENCH_TIMEOUT="600", BENCH_SESSION_CACHE="0"
                )
                labs = [*sides(), NO_CACHE]
                cookies = {
                    side: [servers[side].start_student(n) for n in range(STUDENTS)] for side in labs
                }
                cookies["bare"] = cookies[sides()[0]]

                def run(name: str, number: int) -> dict[str, float]:
                    path = "/bare" if name == "bare" else "/lab/read"
                    return measure(
                        servers[name], path, cookies[name], seconds if number >= 0 else 1, url
                    )

                for name in ["bare", *labs]:  # warm-up: imports, connections, caches
                    run(name, -1)
                results = interleave(run, rounds, ["bare", *labs])
            finally:
                for server in servers.values():
                    server.stop()
    bare = {key: Spread.of([r[key] for r in results["bare"]]) for key in results["bare"][0]}
    print(
        f"bare Flask view (the floor): {bare['requests_per_s'].text(0)} requests/s, "
        f"{bare['cpu_ms_per_request'].text(3)} CPU ms/request, p50 {bare['p50_ms'].text(2)} ms"
    )
    floors = {key: spread.median for key, spread in bare.items()}
    print_table(
        "student view /lab/read (@requires_active), same wrk, same run:",
        [
            Row("requests_per_s", "requests/s", True, "requests_per_s", 0),
            Row("cpu_ms_per_request", "web CPU ms per request", False, "cpu_ms_per_request", 3),
            Row("p50_ms", "latency p50 (ms)", False, "p50_ms", 2),
            Row("redis_commands_per_request", "Redis commands/request (*)", False, None, 3),
        ],
        results,
        floors,
    )
    nc = {key: Spread.of([r[key] for r in results[NO_CACHE]]) for key in results[NO_CACHE][0]}
    print(
        "labruntime with WEBLAB_SESSION_CACHE = False (every request reads Redis and writes "
        "its poll, as weblablib does):\n"
        f"  {nc['requests_per_s'].text(0)} requests/s "
        f"({nc['requests_per_s'].median / floors['requests_per_s']:.2f} of bare), "
        f"{nc['cpu_ms_per_request'].text(3)} CPU ms/request "
        f"({nc['cpu_ms_per_request'].median / floors['cpu_ms_per_request']:.2f}x bare), "
        f"{nc['redis_commands_per_request'].text(2)} Redis commands/request (*)"
    )
    print("(*) INFO stats total_commands_processed: a Lua script counts 1 + its own calls")
    for key, label, goal, met in [
        ("requests_per_s", "student view requests/s / bare", ">= 0.60", lambda v: v >= 0.60),
        ("cpu_ms_per_request", "CPU per student request / bare", "<= 1.5", lambda v: v <= 1.5),
    ]:
        ratios = Spread.of(
            [
                ours[key] / bare_run[key]
                for ours, bare_run in zip(results["labruntime"], results["bare"], strict=True)
            ]
        )
        print(goal_line(f"labruntime {label}", ratios.median, goal, met(ratios.median)))
        print(f"      per round: {ratios.text(2)}")


if __name__ == "__main__":
    main()
