"""The session workload, the same for labruntime and weblablib (any Flask with a test client).

The app must be a lab with the RLMS blueprint under ``/weblab/sessions`` and two student
views protected by ``@requires_active``: ``/lab/read`` (reads weblab_user) and ``/lab/write``
(changes weblab_user.data). Returns a dict of figures (JSON-friendly).
"""

from __future__ import annotations

import base64
import statistics
import time
from typing import Any

from redis_meter import Meter

USER, PASSWORD = "bench", "bench-password"
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def start_body(n: int) -> dict[str, Any]:
    now = time.time()
    return {
        "back": "http://rlms.invalid/back",
        "client_initial_data": {},
        "server_initial_data": {
            "priority.queue.slot.length": "3600",
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


def start_sessions(app: Any, count: int) -> list[str]:
    client = app.test_client()
    ids = []
    for n in range(count):
        reply = client.post("/weblab/sessions/", json=start_body(n), headers=HEADERS)
        ids.append(reply.get_json()["session_id"])
    return ids


def median_cost(costs: list[Any]) -> dict[str, float]:
    return {
        key: statistics.median(getattr(cost, key) for cost in costs)
        for key in ("commands", "round_trips", "server_ms", "wall_ms")
    }


def run(app: Any, redis_url: str, sessions: int = 500, repeats: int = 20) -> dict[str, Any]:
    meter = Meter(redis_url)
    try:
        ids = start_sessions(app, sessions)
        rlms = app.test_client()
        bulk = []
        for _ in range(repeats):
            with meter.measure() as cost:
                reply = rlms.post(
                    "/weblab/sessions/status/multiple", json={"session_ids": ids}, headers=HEADERS
                )
            status = reply.get_json()["status"]
            assert len(status) == sessions and all(v > 0 for v in status.values()), status
            bulk.append(cost)
        one = []
        for session_id in ids[:repeats]:
            with meter.measure() as cost:
                rlms.get(f"/weblab/sessions/{session_id}/status", headers=HEADERS)
            one.append(cost)
        student = app.test_client()
        link = rlms.post("/weblab/sessions/", json=start_body(-1), headers=HEADERS).get_json()
        assert student.get(link["url"]).status_code in (301, 302)
        views: dict[str, list[Any]] = {"read": [], "write": []}
        for _ in range(repeats):
            for name, costs in views.items():
                with meter.measure() as cost:
                    reply = student.get(f"/lab/{name}")
                assert reply.status_code == 200, reply.data
                costs.append(cost)
        return {
            "sessions": sessions,
            "bulk_status": median_cost(bulk),
            "status": median_cost(one),
            "view_read": median_cost(views["read"]),
            "view_write": median_cost(views["write"]),
        }
    finally:
        meter.close()
