"""How costs grow with the number of sessions and tasks (10 -> 10,000): labruntime vs weblablib.

    .venv/bin/python bench/bench_growth.py [--sizes 10,100,1000,5000,10000] [--rounds 2]

For each size N, in a fresh key prefix, with Flask's test client (the public API only):

- bulk status: the RLMS asks the status of N live sessions in one call;
- ``weblab.get_task`` by a stale id (an id of another session's task: id-shaped, not this
  session's) and by name, from a student view of a session holding N tasks (queued, no worker);
- ``weblab.tasks`` from the same view (``len(weblab.tasks)``);
- the cleaner: N sessions whose slot ended, then ``weblab.clean_expired_users()`` until they
  are all ended (labruntime ends at most a batch per pass: the number of passes is printed;
  they run back to back here, where the cleaner thread waits at least 50 ms between two);
  round trips per ended session counted for N <= 1,000 (a second set of sessions through the
  counting proxy).

Wall ms (median of the repeats), Redis CPU ms (INFO cpu), round trips (counting proxy), as in
bench_sessions.py. Floors: a bare Flask request (test client) for views, a PING round trip for
the RLMS and the cleaner. Each side in its own process, in turns, ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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
from redis_meter import CountingProxy, Meter, ping_floor  # noqa: E402
from session_workload import (  # noqa: E402
    HEADERS,
    bare_request_ms,
    op_cost,
    start_body,
    start_sessions,
)

COUNT_TRIPS_UP_TO = 1000


def student(app: Any, number: int, *others: Any) -> list[Any]:
    """A student's browser on ``app`` (and on each of ``others``: the same lab on the
    counting proxy), after following the link of a new session."""
    started = app.test_client().post("/weblab/sessions/", json=start_body(number), headers=HEADERS)
    clients = []
    for lab in (app, *others):
        client = lab.test_client()
        assert client.get(started.get_json()["url"]).status_code in (301, 302)
        clients.append(client)
    return clients


def clean_all(app: Any, expected: int, side: str) -> int:
    """Cleaner passes until ``expected`` sessions are ended; the number of passes."""
    weblab = app.extensions["bench_weblab"]
    with app.app_context():
        if side == "weblablib":
            weblab.clean_expired_users()  # ends every expired session in one pass
            return 1
        ended, passes = 0, 0
        while ended < expected and passes < 1000:
            count = weblab.clean_expired_users(app)
            passes += 1
            ended += count
            if not count:
                break
        return passes


def expired_sessions(app: Any, count: int) -> None:
    start_sessions(app, count, assigned_time=1)
    time.sleep(1.2)  # the last slot is over


def size_figures(side: str, url: str, proxy: CountingProxy, base: str, n: int, repeats: int):
    app = make_app(side, url, base, deployed=False, WEBLAB_TIMEOUT=3600)
    counted = make_app(side, proxy.url, base, deployed=False, WEBLAB_TIMEOUT=3600)
    meter = Meter(url)
    figures: dict[str, Any] = {}
    try:
        # bulk status of n live sessions
        ids = start_sessions(app, n)
        rlms, rlms2 = app.test_client(), counted.test_client()

        def bulk(client: Any) -> Any:
            def call() -> None:
                reply = client.post(
                    "/weblab/sessions/status/multiple", json={"session_ids": ids}, headers=HEADERS
                )
                assert len(reply.get_json()["status"]) == n

            return call

        figures["bulk_status"] = op_cost(meter, proxy, bulk(rlms), bulk(rlms2), repeats)
        # a session with n tasks; a stale id: another session's task
        (owner, owner2), (other,) = student(app, 0, counted), student(app, 1)
        stale = other.get("/lab/delay/stamp").get_json()["ids"][0]
        reply = owner.get(f"/lab/delay/noop?count={n}")
        assert reply.status_code == 200, reply.data

        def view(client: Any, path: str, status: int) -> Any:
            def call() -> None:
                reply = client.get(path)
                assert reply.status_code == status, (path, reply.status_code, reply.data[:200])

            return call

        for key, path, status in [
            ("get_task_stale_id", f"/lab/task/{stale}", 404),
            ("get_task_by_name", "/lab/task/noop", 200),
            ("tasks", "/lab/tasks", 200),
        ]:
            figures[key] = op_cost(
                meter, proxy, view(owner, path, status), view(owner2, path, status), repeats
            )
        # the cleaner: n sessions whose slot is over
        expired_sessions(app, n)
        with meter.measure() as cost:
            passes = clean_all(app, n, side)
        figures["cleaner"] = {
            "wall_ms": cost.wall_ms,
            "server_cpu_ms": cost.server_cpu_ms,
            "passes": passes,
        }
        if n <= COUNT_TRIPS_UP_TO:
            expired_sessions(app, n)
            with proxy.count() as trips:
                clean_all(counted, n, side)
            figures["cleaner"]["round_trips_per_session"] = trips[0] / n
    finally:
        meter.close()
    return figures


def measure(side: str, url: str, base: str, sizes: list[int]) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    figures: dict[str, Any] = {"bare_request_ms": bare_request_ms(20)}
    with CountingProxy(url) as proxy:
        for n in sizes:
            repeats = 10 if n <= 1000 else 3
            figures[str(n)] = size_figures(side, url, proxy, f"{base}-{n}", n, repeats)
    return figures


def rows(sizes: list[int]) -> list[Row]:
    table = []
    for key, label, floor in [
        ("bulk_status", "bulk status of N", "ping"),
        ("get_task_stale_id", "get_task(stale id), N tasks", "bare"),
        ("get_task_by_name", "get_task(name), N tasks", "bare"),
        ("tasks", "weblab.tasks, N tasks", "bare"),
    ]:
        for what, unit, digits in [("wall_ms", "wall ms", 2), ("round_trips", "round trips", 0)]:
            for n in sizes:
                floor_key = floor if what == "wall_ms" else "one"
                table.append(Row(f"{n}.{key}.{what}", f"{label}: {unit}, N={n}", False,
                                 floor_key, digits))  # fmt: skip
    for n in sizes:
        table.append(Row(f"{n}.cleaner.wall_ms", f"cleaner, N ended: wall ms, N={n}", digits=1))
    for n in sizes:
        label = f"cleaner, N ended: passes, N={n}"
        table.append(Row(f"{n}.cleaner.passes", label, digits=0, compare=False))
    for n in sizes:
        if n <= COUNT_TRIPS_UP_TO:
            label = f"cleaner: round trips per ended session, N={n}"
            table.append(Row(f"{n}.cleaner.round_trips_per_session", label, digits=1))
    for n in sizes:
        label = f"cleaner, N ended: Redis CPU ms, N={n}"
        table.append(Row(f"{n}.cleaner.server_cpu_ms", label, digits=1))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_sizes = quick_or_full("10,100,1000", "10,100,1000,5000,10000")
    parser.add_argument("--sizes", default=default_sizes)
    parser.add_argument("--rounds", type=int, default=quick_or_full(1, 2))
    parser.add_argument("--side", choices=["labruntime", "weblablib"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args()
    sizes = [int(n) for n in options.sizes.split(",")]
    if options.side:  # one side's run, in that side's venv: one JSON line
        print(json.dumps(measure(options.side, options.url, options.base, sizes)))
        return
    with bench_section(f"Cost growth, N = {options.sizes}"), redis_url() as url:
        floor = ping_floor(url)
        base = f"growth-{uuid.uuid4().hex[:6]}"

        def one_run(side: str, number: int) -> dict:
            args = ["--url", url, "--base", f"{base}-{side[:2]}{number}", "--sizes", options.sizes]
            return run_side(side, "bench_growth.py", *args, timeout=3600)

        results = interleave(one_run, options.rounds)
    bare = min(r["bare_request_ms"] for r in results["labruntime"])
    print(
        f"floors: Redis PING {floor['wall_ms']:.3f} ms; bare Flask view (test client) {bare:.3f} ms"
    )
    floors = {"ping": floor["wall_ms"], "bare": bare, "one": 1}
    print_table(f"Redis over {url.split('://')[0]}:", rows(sizes), results, floors)


if __name__ == "__main__":
    main()
