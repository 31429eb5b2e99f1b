"""The demo lab's endpoints without a browser (Flask test client, real Redis, real devices),
on its fallback board (``sim:arduino`` and a GPIO LED with buttons, where the AVR twin cannot
run); the twin's demo is in test_demo_twin.py.

The runner threads of the app hold the simulated board and LED, as in ``labruntime demo``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labruntime.demo import DEMO_DEVICES
from labruntime.state import get_state
from labruntime.testing import FakeRLMS
from tests._helpers import running_demo, wait_for


@pytest.fixture
def demo(tmp_path: Path, redis_url: str, redis_base: str) -> Iterator[Any]:
    with running_demo(
        tmp_path,
        redis_url,
        redis_base,
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_DEVICES=dict(DEMO_DEVICES),  # the fallback board (the twin: test_demo_twin.py)
    ) as app:
        yield app


def _student(app: Any, **slot: Any) -> tuple[FakeRLMS, Any, str]:
    rlms = FakeRLMS.for_app(app)
    started = rlms.start(username="ada", style="labsland", **slot)
    client = rlms.client
    assert client.get(started.url).status_code == 302
    return rlms, client, started.session_id


def _follow_program(client: Any, timeout: float = 15.0) -> tuple[dict[str, Any], list[Any]]:
    """Poll /state like the page (but faster) until the task ends; every progress seen."""
    seen: list[Any] = []

    def ended() -> dict[str, Any] | None:
        program = client.get("/state").get_json()["program"]
        if program["progress"] and program["progress"] not in seen:
            seen.append(program["progress"])
        return program if program["status"] in ("done", "failed") else None

    return wait_for(ended, timeout, "the programming task to end"), seen


@pytest.mark.slow
def test_program_example_reports_progress_and_result(demo):
    _, client, _ = _student(demo, assigned_time=120)
    page = client.get("/").get_data(as_text=True)
    assert "Hello, ada" in page and "blink" in page and "does not run AVR code" in page
    reply = client.post("/program", data={"example": "pattern"})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["firmware"] == {"source": "pattern.hex", "size": 8192}
    program, seen = _follow_program(client)
    assert program["status"] == "done", program
    assert program["result"]["bytes"] == 8192 and program["result"]["verified"] is True
    stages = [p["stage"] for p in seen]
    assert "write" in stages and "verify" in stages and len(seen) >= 4, seen
    assert seen[-1]["done"] == seen[-1]["total"] == 64


def test_admission_refuses_what_cannot_finish_in_time(demo):
    _, client, _ = _student(demo, assigned_time=4)
    assert client.post("/program", data={"example": "pattern"}).status_code == 200
    program, seen = _follow_program(client)
    assert program["status"] == "failed" and seen == []
    assert program["error"]["class"] == "NotEnoughTimeError"
    assert "needs about" in program["error"]["message"]


def test_bad_requests_get_clear_json_errors(demo):
    _, client, _ = _student(demo)
    bad = client.post(
        "/program",
        data={"firmware": (io.BytesIO(b":0000000\n"), "x.hex")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("x.hex line 1:")
    assert client.post("/program", data={"example": "nope"}).status_code == 400
    assert client.post("/cancel").status_code == 409
    assert client.post("/led", json={"on": "yes"}).status_code == 400


def test_led_is_read_back_and_logout_expires(demo):
    rlms, client, session_id = _student(demo)
    client.get("/")  # reads the LED back once
    assert client.get("/state").get_json()["led"] == {"on": False, "switches": 0}
    assert client.post("/led", json={"on": True}).get_json() == {"led": True, "switches": 1}
    assert client.get("/state").get_json()["led"] == {"on": True, "switches": 1}
    left = client.post("/leave").get_json()
    assert left["back"] == "http://rlms.invalid/back" and left["next"] == "/"
    state = client.get("/state").get_json()
    assert state["active"] is False and state["back"] == left["back"]
    page = client.get("/").get_data(as_text=True)
    assert "Your session is over" in page and 'href="http://rlms.invalid/back"' in page
    assert client.post("/led", json={"on": False}).status_code == 302  # sent back
    assert rlms.dispose(session_id)["message"] == "Deleted"


def test_slot_over_ends_the_page(demo):
    rlms, client, session_id = _student(demo, assigned_time=1)
    assert client.get("/state").get_json()["active"] is True
    time.sleep(1.2)
    state = client.get("/state").get_json()
    assert state == {"active": False, "back": "http://rlms.invalid/back", "next": "/"}
    assert client.post("/program", data={"example": "blink"}).status_code == 302
    assert rlms.dispose(session_id)["message"] == "Deleted"


def test_state_follows_a_given_task_of_the_session_only(demo):
    _, client, _ = _student(demo)
    first = client.post("/program", data={"example": "blink"}).get_json()["task_id"]
    assert _follow_program(client)[0]["status"] == "done"
    second = client.post("/program", data={"example": "blink"}).get_json()["task_id"]
    assert client.get(f"/state?task={first}").get_json()["program"]["id"] == first
    assert client.get("/state").get_json()["program"]["id"] == second
    _, other, _ = _student(demo)
    assert other.get(f"/state?task={first}").get_json()["program"] is None


def test_logout_while_programming_stops_the_task_and_drives_the_board_safe(demo):
    rlms, client, session_id = _student(demo)
    task_id = client.post("/program", data={"example": "pattern"}).get_json()["task_id"]
    deadline = time.monotonic() + 10
    while not (client.get("/state").get_json()["program"]["progress"] or {}).get("done"):
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    client.post("/leave")
    disposing = time.time()
    assert rlms.dispose(session_id)["message"] == "Deleted"
    task = get_state(demo).tasks.store.get(task_id)
    assert task.status == "failed" and task.error["class"] == "OperationCancelled", task
    report = get_state(demo).devices.store.last_safe("board")
    assert report["ok"] and report["at"] >= disposing and report["state"]["progmode"] is False
