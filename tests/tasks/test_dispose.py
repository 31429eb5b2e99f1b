"""Ending a session: its tasks are stopped, waited for (bounded), then on_dispose runs."""

from __future__ import annotations

import time

from labruntime.testing import FakeRLMS
from tests._helpers import wait_for


def _started(task) -> bool:
    return task.retrieve().running


def test_dispose_stops_and_waits_for_tasks(lab) -> None:
    disposed: list[list[str]] = []
    lab.weblab.on_dispose(lambda: disposed.append([t.status for t in lab.weblab.tasks]))
    sid = lab.start_session()
    with lab.as_session(sid):
        task = lab.tasks["until_stopped"].delay(20)
        queued = lab.tasks["add"].delay(1, 2).join(timeout=5)
        wait_for(lambda: _started(task), 5, f"{task} to start")
    start = time.monotonic()
    reply = lab.rlms.dispose(sid)
    assert reply["message"] == "Deleted"
    assert time.monotonic() - start < 3
    assert disposed == [["done", "done"]]  # on_dispose sees the session's tasks, all ended
    # finished tasks stay readable by the (now expired) user
    with lab.as_session(sid):
        got = lab.weblab.get_task(task.task_id)
        assert got.done and got.result.startswith("stopped after")
        assert {t.task_id for t in lab.weblab.tasks} == {task.task_id, queued.task_id}
        assert lab.weblab.running_tasks == []


def test_dispose_answers_ask_again_then_times_out(lab_factory) -> None:
    lab = lab_factory(threads=1, dispose_timeout=2)
    sid = lab.start_session()
    with lab.as_session(sid):
        stubborn = lab.tasks["ignore_stop"].delay(4)
        wait_for(lambda: _started(stubborn), 5, f"{stubborn} to start")
    rlms = FakeRLMS.for_app(lab.app, style="labsland", max_dispose_wait=10)
    first = rlms.request("POST", sid, {"action": "delete"})
    body = first.json()
    assert body.get("finished") is False and body.get("ask_again", 0) > 0
    assert body.get("should_finish", -1) > 0
    start = time.monotonic()
    assert rlms.dispose(sid)["message"] == "Deleted"
    assert time.monotonic() - start < 4
    with lab.as_session(sid):
        got = lab.weblab.get_task(stubborn.task_id)
        assert got.failed and got.error["code"] == "dispose-timeout"
