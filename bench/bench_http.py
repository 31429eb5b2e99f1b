"""HTTP throughput under gunicorn with many students: the student view against a bare view.

    .venv/bin/python bench/bench_http.py        (needs wrk: apt-get install wrk)

Three gunicorn servers (2 workers x 4 threads, gthread, as config/gunicorn.conf.py) on one
Redis: a bare Flask app (``/bare``, no extension: the floor), labruntime's lab and
weblablib's lab (``/lab/read``: ``@requires_active`` returning the user name). 50 students
started through the RLMS API hold their cookie from the link; wrk (2 threads, one keep-alive
connection per student, each request with the next student's cookie) loads one server at a
time, in turns (bare, labruntime, weblablib, bare, ...). Figures per run: requests/s, p50
latency, and web CPU per request (utime + stime of the gunicorn master and workers, from
/proc, over the run, divided by the requests served). wrk runs on the same machine, so it
takes CPU from the servers: the same tool loads every server, and CPU per request does not
depend on it.
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
    redis_url,
    sides,
)
from deploy import Gunicorn, wrk, wrk_path  # noqa: E402

STUDENTS = 50


def measure(server: Gunicorn, path: str, cookies: list[str], seconds: float) -> dict[str, float]:
    before = server.cpu_ms()
    result = wrk(server.base_url, path, cookies, seconds, STUDENTS)
    spent = server.cpu_ms() - before
    if result["errors"]:
        raise RuntimeError(f"{server.side}: {result['errors']} failed requests on {path}")
    return {**result, "cpu_ms_per_request": spent / max(1, result["requests"])}


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
                cookies = {
                    side: [servers[side].start_student(n) for n in range(STUDENTS)]
                    for side in sides()
                }
                cookies["bare"] = cookies[sides()[0]]

                def run(name: str, number: int) -> dict[str, float]:
                    path = "/bare" if name == "bare" else "/lab/read"
                    return measure(
                        servers[name], path, cookies[name], seconds if number >= 0 else 1
                    )

                for name in ["bare", *sides()]:  # warm-up: imports, connections, caches
                    run(name, -1)
                results = interleave(run, rounds, ["bare", *sides()])
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
        ],
        results,
        floors,
    )
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
