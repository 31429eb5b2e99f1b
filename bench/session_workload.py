"""The session workload, the same for labruntime and weblablib (any Flask with a test client).

The app must be a lab with the RLMS blueprint under ``/weblab/sessions`` and two student
views protected by ``@requires_active``: ``/lab/read`` (reads weblab_user) and ``/lab/write``
(changes weblab_user.data). :func:`run` takes two instances of the same lab on the same Redis
data: ``app`` on the direct URL (timed: wall ms, server CPU), ``counted`` on the counting
proxy's URL (round trips). Returns a dict of figures (JSON-friendly).
"""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable
from typing import Any

from redis_meter import CountingProxy, Meter

USER, PASSWORD = "bench", "bench-rlms-password"
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def start_body(n: int, assigned_time: float = 3600) -> dict[str, Any]:
    now = time.time()
    return {
        "back": "http://rlms.invalid/back",
        "client_initial_data": {},
        "server_initial_data": {
            "priority.queue.slot.length": str(assigned_time),
            "priority.queue.slot.start": time.strftime("%Y-%m-%d %H:%M:%S.000001"),
            "priority.queue.slot.start.timestamp": str(now),
            "request.username": f"student{n}",
            "request.username.unique": f"student{n}@bench",
            "request.full_name": f"student{n}",
            "request.locale": "en",
            "request.experiment_id.experiment_name": "bench",
            "request.experiment_id.category_name": "bench",
        },
    }


def start_sessions(app: Any, count: int, assigned_time: float = 3600) -> list[str]:
    client = app.test_client()
    ids = []
    for n in range(count):
        body = start_body(n, assigned_time)
        reply = client.post("/weblab/sessions/", json=body, headers=HEADERS)
        ids.append(reply.get_json()["session_id"])
    return ids


def op_cost(
    meter: Meter, proxy: CountingProxy, timed: Callable[[], Any], counted: Callable[[], Any],
    repeats: int,
) -> dict[str, float]:  # fmt: skip
    """One operation's figures: wall ms (median of ``repeats``), server CPU ms and commands
    (per operation, over the block of ``repeats``), round trips (one run through the proxy)."""
    timed()  # warm-up (and the counted instance's connection and scripts)
    counted()
    walls = []
    with meter.measure() as cost:
        for _ in range(repeats):
            began = time.perf_counter()
            timed()
            walls.append((time.perf_counter() - began) * 1000)
    with proxy.count() as trips:
        counted()
    return {
        "wall_ms": statistics.median(walls),
        "server_cpu_ms": cost.server_cpu_ms / repeats,
        "commands": cost.commands / repeats,
        "round_trips": trips[0],
    }


def bare_request_ms(repeats: int) -> float:
    """The floor of a view: a Flask app with no extension, same test client."""
    from flask import Flask

    bare = Flask("bare")
    bare.add_url_rule("/bare", "bare", lambda: "hello bare")
    client = bare.test_client()
    client.get("/bare")
    walls = []
    for _ in range(repeats * 5):
        began = time.perf_counter()
        client.get("/bare")
        walls.append((time.perf_counter() - began) * 1000)
    return statistics.median(walls)


def run(
    app: Any, counted: Any, url: str, proxy: CountingProxy, sessions: int = 500,
    repeats: int = 20,
) -> dict[str, Any]:  # fmt: skip
    meter = Meter(url)
    try:
        ids = start_sessions(app, sessions)
        rlms, rlms2 = app.test_client(), counted.test_client()

        def bulk(client: Any) -> Callable[[], Any]:
            def call() -> None:
                reply = client.post(
                    "/weblab/sessions/status/multiple", json={"session_ids": ids}, headers=HEADERS
                )
                status = reply.get_json()["status"]
                assert len(status) == sessions and all(v > 0 for v in status.values()), status

            return call

        def one(client: Any) -> Callable[[], Any]:
            return lambda: client.get(f"/weblab/sessions/{ids[0]}/status", headers=HEADERS)

        figures: dict[str, Any] = {"sessions": sessions}
        figures["bulk_status"] = op_cost(meter, proxy, bulk(rlms), bulk(rlms2), repeats)
        figures["status"] = op_cost(meter, proxy, one(rlms), one(rlms2), repeats)
        link = rlms.post("/weblab/sessions/", json=start_body(-1), headers=HEADERS).get_json()
        student = app.test_client()
        assert student.get(link["url"]).status_code in (301, 302)
        student2 = counted.test_client()  # the same student's link, on the counted instance
        assert student2.get(link["url"]).status_code in (301, 302)
        for name in ("read", "write"):

            def view(client: Any, name: str = name) -> Callable[[], Any]:
                def call() -> None:
                    reply = client.get(f"/lab/{name}")
                    assert reply.status_code == 200, reply.data

                return call

            figures[f"view_{name}"] = op_cost(meter, proxy, view(student), view(student2), repeats)
        figures["bare_request_ms"] = bare_request_ms(repeats)
        return figures
    finally:
        meter.close()
