"""Task layer benchmark: labruntime vs weblablib 0.5.9, same Redis, same machine.

    .venv/bin/python bench/bench_tasks.py [--rounds 3] [--samples 100] [--tasks 1000]

Figures, with the public API only (a student's view delays the task; bench/lab_app.py):

- pickup latency: from just before ``.delay()`` to the first line of the task's body, one
  task at a time, each delayed at a random moment (a uniform pause of 0 to 1 s before it, so
  arrivals fall anywhere in weblablib's 1 s polling cycle, as students' clicks do), p50 and
  p99. Two deployments each: the documented one, a separate worker process
  (``labruntime --app lab_app:app loop --threads 1``, weblablib's ``flask weblab loop``),
  and one task thread in the web process (WEBLAB_TASK_THREADS_PROCESS = 1).
- throughput: N no-op tasks delayed in one request while the worker process (1 or 4
  threads) is already running, until the last is done.
- dispose: the RLMS's dispose call, until it returns "Deleted", while the session's task runs
  (it loops on ``current_task_stopping``; the worker process runs it).

Each side runs in its own process (weblablib in its venv), in turns, ``--rounds`` times.
Floor of the latency: a Redis PING round trip (a pickup needs at least one).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
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
    percentile,
    print_table,
    quick_or_full,
    redis_url,
    run_side,
    shutdown_lab,
)
from deploy import LoopWorker  # noqa: E402
from lab_app import make_app  # noqa: E402
from redis_meter import ping_floor  # noqa: E402
from session_workload import HEADERS, start_body  # noqa: E402


class Student:
    """A student's browser on an app (test client), after following the RLMS's link."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()
        started = self.client.post("/weblab/sessions/", json=start_body(0), headers=HEADERS)
        self.session_id = started.get_json()["session_id"]
        reply = self.client.get(started.get_json()["url"])
        assert reply.status_code in (301, 302), reply.status_code

    def delay(self, name: str, count: int = 1) -> dict[str, Any]:
        reply = self.client.get(f"/lab/delay/{name}?count={count}")
        assert reply.status_code == 200, reply.data
        return reply.get_json()

    def wait(self, task_id: str, until: tuple[str, ...] = ("done", "failed"), timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.client.get(f"/lab/task/{task_id}").get_json()
            if reply["status"] in until:
                return reply
            time.sleep(0.01)
        raise TimeoutError(f"task {task_id} still {reply['status']} after {timeout} s")


def latency(app: Any, samples: int, gap: float) -> dict[str, float]:
    student = Student(app)
    student.wait(student.delay("stamp")["ids"][0])  # warm-up
    values = []
    for _ in range(samples):
        time.sleep(random.uniform(0, gap))
        delayed = student.delay("stamp")
        result = student.wait(delayed["ids"][0])["result"]
        values.append((result - delayed["before"]) * 1000)
    return {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99), "n": samples}


def throughput(app: Any, count: int) -> dict[str, float]:
    student = Student(app)
    student.wait(student.delay("noop")["ids"][0])  # the worker is up
    began = time.perf_counter()
    ids = student.delay("noop", count)["ids"]
    for task_id in ids:
        student.wait(task_id, timeout=300)
    return {"tasks_per_s": count / (time.perf_counter() - began), "n": count}


def dispose_time(app: Any, rounds: int) -> dict[str, float]:
    rlms = app.test_client()
    values = []
    for _ in range(rounds):
        student = Student(app)
        student.wait(student.delay("until_stopped")["ids"][0], until=("running",))
        began = time.perf_counter()
        while True:
            reply = rlms.post(
                f"/weblab/sessions/{student.session_id}", json={"action": "delete"}, headers=HEADERS
            ).get_json()
            if reply.get("finished") is False:
                time.sleep(float(reply.get("ask_again", 1)))
                continue
            break
        values.append((time.perf_counter() - began) * 1000)
        assert reply.get("message") == "Deleted", reply
    return {"median_ms": sorted(values)[len(values) // 2], "n": rounds}


def measure(side: str, url: str, base: str, samples: int, gap: float, count: int) -> dict:
    logging.basicConfig(level=logging.ERROR)
    figures: dict[str, Any] = {}
    driver = make_app(side, url, base, deployed=False)
    with LoopWorker(side, url, base, threads=1):
        figures["latency_loop"] = latency(driver, samples, gap)
        figures["dispose"] = dispose_time(driver, quick_or_full(2, 5))
        figures["throughput_1"] = throughput(driver, count)
    with LoopWorker(side, url, base, threads=4):
        figures["throughput_4"] = throughput(driver, count)
    web = make_app(
        side, url, base + "-t", WEBLAB_TASK_THREADS_PROCESS=1, WEBLAB_AUTOCLEAN_THREAD=False
    )
    web.test_client().get("/bare")  # labruntime starts its threads on the first request
    figures["latency_thread"] = latency(web, samples, gap)
    if side == "labruntime":
        shutdown_lab(web)
    return figures


ROWS = [
    Row("latency_loop.p50_ms", "pickup p50, worker process (ms)", floor="ping", digits=2),
    Row("latency_loop.p99_ms", "pickup p99, worker process (ms)", floor="ping", digits=2),
    Row("latency_thread.p50_ms", "pickup p50, thread in web process (ms)", floor="ping", digits=2),
    Row("latency_thread.p99_ms", "pickup p99, thread in web process (ms)", floor="ping", digits=2),
    Row("throughput_1.tasks_per_s", "no-op tasks/s, worker 1 thread", True, digits=0),
    Row("throughput_4.tasks_per_s", "no-op tasks/s, worker 4 threads", True, digits=0),
    Row("dispose.median_ms", "dispose returns after stop point (ms)", digits=1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=quick_or_full(1, 3))
    parser.add_argument("--samples", type=int, default=quick_or_full(10, 100))
    parser.add_argument("--gap", type=float, default=1.0, help="longest random pause (s)")
    parser.add_argument("--tasks", type=int, default=quick_or_full(200, 1000))
    parser.add_argument("--side", choices=["labruntime", "weblablib"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.side:  # one side's run, in that side's venv: one JSON line
        figures = measure(
            options.side, options.url, options.base, options.samples, options.gap, options.tasks
        )
        print(json.dumps(figures))
        return
    title = f"Task layer: {options.samples} pickups with random arrivals (0-{options.gap:g} s)"
    with bench_section(title), redis_url() as url:
        floor = ping_floor(url)
        base = f"bench-{uuid.uuid4().hex[:8]}"

        def one_run(side: str, number: int) -> dict:
            args = ["--url", url, "--base", f"{base}-{side[:2]}{number}"]
            args += ["--samples", str(options.samples), "--gap", str(options.gap)]
            return run_side(side, "bench_tasks.py", *args, "--tasks", str(options.tasks))

        results = interleave(one_run, options.rounds)
    print(f"floor: Redis PING round trip {floor['wall_ms']:.3f} ms")
    print_table(
        f"Redis over {url.split('://')[0]}; throughput: {options.tasks} tasks delayed at once:",
        ROWS,
        results,
        {"ping": floor["wall_ms"]},
    )


if __name__ == "__main__":
    main()
