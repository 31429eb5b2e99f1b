"""The seed's program_device lab, driven over real HTTP by a fake RLMS and real browsers."""

from __future__ import annotations

import time

import pytest

from labruntime.state import get_state
from labruntime.testing import StartError
from tests._helpers import wait_for

pytestmark = pytest.mark.slow


def _student(lab, **slot):
    started = lab.rlms.start({"board": "uno"}, back="http://rlms.invalid/back", **slot)
    browser = lab.browser()
    page = browser.enter(started.url)
    assert page.status == 200, page.text[:300]
    return started, browser


def _finished(browser, task_id):
    """The task's page once it says finished (None before)."""
    page = browser.get(f"/lab/task/{task_id}")
    assert page.status == 200, page.text[:300]
    return page.json() if page.json()["finished"] else None


@pytest.mark.parametrize("style", ["weblabdeusto", "labsland"])
def test_program_device_delay_then_follow_it(serve_lab, style):
    lab = serve_lab("seed_lab", style=style)
    _, browser = _student(lab, username="alice", assigned_time=120)
    queued = browser.post("/lab/program", {"code": "my-own-code"}).json()
    assert queued["status"] in ("submitted", "running", "done")
    assert queued["name"] == "program_device"
    assert queued["result"] is None or queued["status"] == "done"
    done = wait_for(lambda: _finished(browser, queued["task_id"]), 15, "the task to finish")
    assert done["status"] == "done"
    assert done["result"] == len("my-own-code")
    assert done["error"] is None
    assert done["data"] == {"progress": 100}
    # the id was stored in Flask's session and weblab_user.data, as the seed suggests
    assert browser.get("/lab/me").json()["data"]["last_task"] == queued["task_id"]


def test_direct_call_and_run_sync(serve_lab):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab, assigned_time=120)
    assert browser.post("/lab/program-now", {"code": "abc"}).json() == {"result": 3}
    task = browser.post("/lab/run-sync", {"code": "abcd"}).json()
    assert (task["status"], task["result"]) == ("done", 4)


def test_program_device_refuses_when_time_is_short(serve_lab):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab, assigned_time=8)
    queued = browser.post("/lab/program").json()
    failed = wait_for(lambda: _finished(browser, queued["task_id"]), 15, "the task to finish")
    assert failed["status"] == "failed"
    assert failed["result"] is None
    assert failed["error"]["code"] == "exception"
    assert failed["error"]["class"] == "Exception"
    assert "not have enough time" in failed["error"]["message"]


def test_weblab_user_as_the_rlms_described_it(serve_lab):
    lab = serve_lab("seed_lab")
    started, browser = _student(
        lab, username="bob", username_unique="bob@uni", assigned_time=200, locale="es",
        experiment_name="ardulab", category_name="Arduino",
    )  # fmt: skip
    me = browser.get("/lab/me").json()
    assert me["kind"] == "CurrentUser"
    assert me["active"] is True and me["is_anonymous"] is False
    assert me["session_id"] == started.session_id
    assert (me["username"], me["username_unique"], me["locale"]) == ("bob", "bob@uni", "es")
    assert me["back"] == "http://rlms.invalid/back"
    assert me["experiment_id"] == "ardulab@Arduino"
    assert (me["experiment_name"], me["category_name"]) == ("ardulab", "Arduino")
    assert me["request_client_data"] == {"board": "uno"}
    assert me["request_server_data"]["request.username"] == "bob"
    assert 190 < me["time_left"] <= 200
    assert me["max_date"] - me["start_date"] == pytest.approx(200, abs=1)
    # on_start filled weblab_user.data without returning it
    assert set(me["data"]) == {"local_identifier", "client"}
    assert me["data"]["client"] == {"board": "uno"}
    start = lab.events()[0]
    assert (start["event"], start["username"]) == ("start", "bob")
    assert 190 < start["time_left"] <= 200  # weblab_user.time_left inside on_start


def test_page_keeps_polling_and_anonymous_is_forbidden(serve_lab):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab)
    page = browser.get("/lab/")
    assert "<script>" in page.text and "/lab/callback/" in page.text
    stranger = lab.browser()
    forbidden = stranger.get("/lab/")
    assert (forbidden.status, forbidden.text) == (403, "Access forbidden")
    assert stranger.post("/lab/program").status == 403


def test_dispose_once_then_expired_user_keeps_results(serve_lab):
    lab = serve_lab("seed_lab")
    started, browser = _student(lab, assigned_time=120)
    me = browser.get("/lab/me").json()
    task_id = browser.post("/lab/program", {"code": "xyz"}).json()["task_id"]
    wait_for(lambda: _finished(browser, task_id), 15, "the task to finish")
    assert lab.rlms.dispose(started.session_id)["message"] == "Deleted"
    assert lab.rlms.dispose(started.session_id) == {"message": "Deleted"}  # as weblablib
    disposes = [e for e in lab.events() if e["event"] == "dispose"]
    assert len(disposes) == 1
    assert disposes[0]["session_id"] == started.session_id
    assert disposes[0]["local_identifier"] == me["data"]["local_identifier"]
    assert disposes[0]["tasks"] == ["program_device"]
    expired = browser.get("/lab/me").json()
    assert expired["kind"] == "ExpiredUser"
    assert (expired["active"], expired["time_left"]) == (False, 0)
    assert expired["data"]["local_identifier"] == me["data"]["local_identifier"]
    # results stay readable by the expired user; active-only views send it back
    assert browser.get(f"/lab/task/{task_id}").json()["result"] == 3
    back = browser.post("/lab/program")
    assert (back.status, back.location) == (302, "http://rlms.invalid/back")
    assert lab.rlms.status(started.session_id) == -1


def test_dispose_stops_a_running_task_first(serve_lab):
    lab = serve_lab("seed_lab")
    started, browser = _student(lab, assigned_time=120)
    task_id = browser.post("/lab/calibrate", {"seconds": "60"}).json()["task_id"]
    deadline = time.monotonic() + 10
    while browser.get(f"/lab/task/{task_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    assert lab.rlms.dispose(started.session_id)["message"] == "Deleted"
    assert time.monotonic() - began < 10
    dispose = [e for e in lab.events() if e["event"] == "dispose"][0]
    assert dispose["running"] == []
    task = browser.get(f"/lab/task/{task_id}").json()
    assert (task["status"], task["result"]) == ("done", "stopped")


def test_unique_global_rejects_a_second_one_for_anybody(serve_lab):
    lab = serve_lab("seed_lab")
    _, alice = _student(lab, username="alice")
    _, bob = _student(lab, username="bob")
    first = alice.post("/lab/calibrate", {"seconds": "30"})
    assert first.status == 200
    assert alice.post("/lab/calibrate").status == 409
    assert bob.post("/lab/calibrate").status == 409
    stopped = alice.post("/lab/stop/calibrate").json()
    assert [(t["status"], t["result"]) for t in stopped] == [("done", "stopped")]
    assert bob.post("/lab/calibrate", {"seconds": "0"}).status == 200


def test_tasks_are_per_session(serve_lab):
    lab = serve_lab("seed_lab")
    _, alice = _student(lab, username="alice")
    _, bob = _student(lab, username="bob")
    task_id = alice.post("/lab/program").json()["task_id"]
    wait_for(lambda: _finished(alice, task_id), 15, "the task to finish")
    assert bob.get(f"/lab/task/{task_id}").status == 404
    assert bob.get("/lab/tasks").json() == {"tasks": [], "running": []}
    assert alice.get("/lab/tasks").json() == {"tasks": ["program_device"], "running": []}
    by_name = alice.get("/lab/task-by-name/program_device").json()
    assert by_name["latest"]["task_id"] == task_id and by_name["all"] == [task_id]
    assert by_name["running"] is None and by_name["running_all"] == []
    assert bob.get("/lab/task-by-name/program_device").json()["latest"] is None
    assert alice.get("/lab/task-by-function").json()["task_id"] == task_id
    assert bob.get("/lab/task-by-function").json() is None
    assert alice.get("/lab/task/no-such-task").status == 404


def test_join_timeout_is_also_the_builtin_timeout_error(serve_lab):
    lab = serve_lab("seed_lab")
    _, browser = _student(lab)
    task_id = browser.post("/lab/calibrate", {"seconds": "30"}).json()["task_id"]
    joined = browser.get(f"/lab/join/{task_id}?timeout=0.2").json()
    assert joined["timeout"] is True and joined["builtin"] is True
    browser.post("/lab/stop/calibrate")


def test_logout_tells_the_rlms(serve_lab):
    lab = serve_lab("seed_lab")
    started, browser = _student(lab)
    assert lab.rlms.status(started.session_id) > 0
    assert browser.post("/lab/logout").json() == {"error": False}
    assert lab.rlms.status(started.session_id) == -1
    assert lab.rlms.dispose(started.session_id)["message"] in ("Deleted", "Not found")


def test_served_under_a_script_name(serve_lab):
    lab = serve_lab("seed_lab", script_name="/lab1")
    started, browser = _student(lab)
    assert started.url.startswith(lab.base_url + "/lab/callback/")
    assert "/lab1/" in started.url
    assert browser.get("/lab/me").json()["session_id"] == started.session_id


def test_start_refused_when_on_start_fails(serve_lab, load_lab):
    module = load_lab("seed_lab")
    get_state(module.app).hooks.on_start = None  # the seed lab's own is replaced

    @module.weblab.on_start
    def broken(client_data, server_data):
        raise RuntimeError("the board is on fire")

    lab = serve_lab("seed_lab", module=module)
    with pytest.raises(StartError) as refused:
        lab.rlms.start()
    assert refused.value.reply["error"] is True
    assert refused.value.reply["message"]
    assert [e["event"] for e in lab.events()] == ["dispose"]
