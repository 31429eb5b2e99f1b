"""What a deployed lab costs while nobody uses it: CPU per minute and memory of each process.

    .venv/bin/python bench/bench_idle.py [--rounds 3] [--window 60] [--sessions 100]

Each side is deployed as config/ describes a lab: gunicorn (2 workers x 4 threads, the cleaner
thread in the web workers, no task thread there), the separate task worker (labruntime's
``loop``, weblablib's ``flask weblab loop``, 5 threads) and its own Redis server (embedded, so
its CPU is the lab's alone). After a warm-up (1 s of requests, so every web worker has served
one and started its threads) and 2 s of rest:

- idle lab: CPU-ms per minute of the web processes (master + workers), the worker process and
  redis-server, from /proc (utime + stime) over ``--window`` seconds with no session;
- per idle session: then ``--sessions`` sessions are started through the RLMS API and left
  alone (no student request, no RLMS poll; WEBLAB_TIMEOUT is 1 h so none ends): the extra
  CPU-ms per minute of the whole lab, divided by the number of sessions;
- memory: RSS and PSS (smaps_rollup) of each process at the end.

The floor is a bare Flask app under the same gunicorn with an idle redis-server of its own.
Deployments run in turns (floor, labruntime, weblablib, ...), ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Row,
    Spread,
    bench_section,
    cpu_ms,
    goal_line,
    interleave,
    memory_kb,
    print_table,
    quick_or_full,
    redis_info,
    redis_url,
    sides,
)
from deploy import Gunicorn, LoopWorker, wrk  # noqa: E402
from session_workload import HEADERS, start_body  # noqa: E402


def redis_pid(url: str) -> int:
    return int(redis_info(url, "server")["process_id"])


def start_idle_sessions(server: Gunicorn, count: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for n in range(count):
            connection.request(
                "POST",
                "/weblab/sessions/",
                body=json.dumps(start_body(n)),
                headers={**HEADERS, "Content-Type": "application/json"},
            )
            reply = json.loads(connection.getresponse().read())
            assert "session_id" in reply, reply
    finally:
        connection.close()


def deployment(side: str, window: float, sessions: int) -> dict[str, float]:
    with redis_url(private=True) as url:
        base = f"idle-{uuid.uuid4().hex[:6]}"
        processes = {"redis": [redis_pid(url)]}
        with Gunicorn(side, url, base, BENCH_TIMEOUT="3600") as web:
            worker = LoopWorker(side, url, base) if side != "bare" else None
            try:
                wrk(web.base_url, "/bare", ["x=1"], 1, 4)  # every web worker serves a request
                time.sleep(2)
                processes["web"] = web.pids()
                if worker is not None:
                    processes["worker"] = worker.pids()
                figures = {f"idle.{k}": v for k, v in _per_minute(processes, window).items()}
                if side != "bare":
                    start_idle_sessions(web, sessions)
                    time.sleep(2)
                    busy = _per_minute(processes, window)
                    extra = busy["total"] - figures["idle.total"]
                    figures["per_session_cpu_ms_per_min"] = extra / sessions
                for name, pids in processes.items():
                    for kind in ("rss", "pss"):
                        values = [memory_kb(pid)[f"{kind}_kb"] for pid in pids]
                        figures[f"memory.{name}.{kind}_mb"] = sum(values) / 1024
                    if name == "web":
                        worker_pss = [memory_kb(pid)["pss_kb"] / 1024 for pid in pids[1:]]
                        figures["memory.web_worker.pss_mb"] = max(worker_pss)
                return figures
            finally:
                if worker is not None:
                    worker.stop()


def _per_minute(processes: dict[str, list[int]], window: float) -> dict[str, float]:
    before = {name: sum(cpu_ms(pid) for pid in pids) for name, pids in processes.items()}
    began = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - began
    spent = {
        name: (sum(cpu_ms(pid) for pid in pids) - before[name]) * 60 / elapsed
        for name, pids in processes.items()
    }
    spent["total"] = sum(spent.values())
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=quick_or_full(1, 3))
    parser.add_argument("--window", type=float, default=quick_or_full(10, 60))
    parser.add_argument("--sessions", type=int, default=quick_or_full(200, 1000))
    options = parser.parse_args()
    title = f"Idle lab: {options.window:g} s windows, {options.sessions} idle sessions"
    with bench_section(title):
        results = interleave(
            lambda side, n: deployment(side, options.window, options.sessions),
            options.rounds,
            ["bare", *sides()],
        )
    floor = {key: Spread.of([r[key] for r in results["bare"]]).median for key in results["bare"][0]}
    print(
        f"floor (bare Flask under the same gunicorn + an idle redis-server): "
        f"{floor['idle.total']:.0f} CPU-ms/min; PSS {floor['memory.web.pss_mb']:.1f} MB web, "
        f"{floor['memory.redis.pss_mb']:.1f} MB Redis"
    )
    rows = [
        Row("idle.total", "idle lab, CPU-ms per minute", floor="idle.total", digits=0),
        Row("idle.web", "  web (gunicorn master + 2 workers)", floor="idle.web", digits=0),
        Row("idle.worker", "  task worker process", digits=0),
        Row("idle.redis", "  redis-server", floor="idle.redis", digits=0),
        Row("per_session_cpu_ms_per_min", "CPU-ms per idle session per minute", digits=2),
        Row("memory.web.pss_mb", "PSS MB, web (master + workers)", floor="memory.web.pss_mb"),
        Row("memory.web_worker.pss_mb", "PSS MB, largest web worker", digits=1),
        Row("memory.web.rss_mb", "RSS MB, web (master + workers)", floor="memory.web.rss_mb"),
        Row("memory.worker.pss_mb", "PSS MB, task worker", digits=1),
        Row("memory.worker.rss_mb", "RSS MB, task worker", digits=1),
        Row("memory.redis.pss_mb", "PSS MB, redis-server", floor="memory.redis.pss_mb"),
    ]
    print_table("each process of a deployed lab:", rows, results, floor)
    ours = Spread.of([r["idle.total"] for r in results["labruntime"]])
    print(goal_line("labruntime idle lab CPU-ms/min", ours.median, "<= 100", ours.median <= 100))
    print(f"      per round: {ours.text(0)}")


if __name__ == "__main__":
    main()
