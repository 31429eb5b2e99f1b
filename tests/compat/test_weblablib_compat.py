"""The weblablib behaviours of issue 12, each tested the way a lab's own tests are written:
through the public API, ``app.test_client()``, ``app.test_cli_runner()`` and ``app.logger``
(caplog), on the weblablib-style lab ``labs/weblablib_lab.py``. The numbers are the issue's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from labruntime import AlreadyInitializedError, InvalidConfigError, NoContextError, WebLab
from labruntime.testing import FakeRLMS
from tests._labs import lab_app

EVENT = "weblab_session_lifecycle"
LAB_FILE = Path(__file__).parent / "labs" / "weblablib_lab.py"


@pytest.fixture
def lab(load_lab):
    return load_lab("weblablib_lab")


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def _events(caplog: pytest.LogCaptureFixture, app: Flask) -> list[dict[str, Any]]:
    """The lifecycle events the lab's logger received, as weblablib writes them (JSON)."""
    found = []
    for record in caplog.records:
        if record.name != app.logger.name:
            continue
        try:
            event = json.loads(record.getMessage())
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == EVENT:
            found.append(event)
    return found


@pytest.fixture
def logs(caplog):
    """caplog at INFO for the lab's logger and labruntime's own loggers."""

    def watch(app: Flask) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.INFO, logger=app.logger.name)
        caplog.set_level(logging.INFO, logger="labruntime")
        return caplog

    return watch


def _enter(rlms: FakeRLMS, **slot: Any) -> str:
    started = rlms.start({}, back="https://rlms.invalid/back/alice", **slot)
    assert rlms.client.get(started.url).status_code == 302
    assert rlms.client.get("/lab").status_code == 200
    return started.session_id


# -- 1. session lifecycle events ------------------------------------------------------------
def test_1_anonymous_request_rejected_event(lab, logs):
    caplog = logs(lab.app)
    reply = lab.app.test_client().get("/lab")
    assert reply.status_code == 403
    [event] = _events(caplog, lab.app)
    assert event["action"] == "protected_request_rejected"
    assert event["reason"] == "anonymous_no_session_cookie"
    assert (event["status"], event["path"], event["method"]) == (403, "/lab", "GET")
    assert event["endpoint"] == "lab" and event["session_id_hash"] is None
    assert (event["lab_name"], event["environment"]) == ("compat-lab", "test")


def test_1_a_cookie_of_a_session_that_is_gone(lab, logs):
    caplog = logs(lab.app)
    client = lab.app.test_client()
    with client.session_transaction() as cookie:
        cookie["weblab_session_id"] = "a-session-that-is-gone"
    assert client.get("/lab").status_code == 403
    [event] = _events(caplog, lab.app)
    assert event["reason"] == "anonymous_session_not_found"
    assert event["session_id_hash"] == _hash("a-session-that-is-gone")
    assert not [r for r in caplog.records if "a-session-that-is-gone" in r.getMessage()]


def test_1_user_exited_expiry_once_rejection_and_dispose_keep_the_student_private(lab, logs):
    caplog = logs(lab.app)
    rlms = FakeRLMS.for_app(lab.app)
    sid = _enter(rlms, username="alice", full_name="Alice Liddell", experiment_name="robot")
    assert rlms.client.post(f"/callback/{sid}/logout").get_json()["success"] is True
    assert rlms.status(sid) == -1
    assert rlms.status(sid) == -1  # asked again: no second expiry event
    ended = rlms.client.get("/lab")  # the student comes back: sent to the RLMS's back link
    assert ended.status_code == 302
    assert rlms.dispose(sid) == {"message": "Deleted"}
    events = _events(caplog, lab.app)
    assert [(e["action"], e["reason"]) for e in events] == [
        ("expiry_detected", "user_exited"),
        ("protected_request_rejected", "user_exited"),
        ("disposed", "user_exited"),
    ]
    assert all(e["session_id_hash"] == _hash(sid) for e in events)
    assert events[0]["source"] == "status" and events[2]["source"] == "rlms"
    assert events[1]["status"] == 302 and events[1]["path"] == "/lab"
    assert events[2]["path"] == "/weblab/sessions/<session_id>"  # the route, not the id
    assert events[0]["experiment_name"] == "robot"
    assert events[0]["configured_timeout_seconds"] == 60
    assert isinstance(events[0]["seconds_since_start"], int)
    secrets = (sid, "alice", "Alice Liddell", "rlms.invalid/back")
    leaks = [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in secrets)]
    assert not leaks


def test_1_time_limit_reached(lab, logs):
    caplog = logs(lab.app)
    rlms = FakeRLMS.for_app(lab.app)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    sid = rlms.start({}, assigned_time=10, start=start).session_id
    assert rlms.status(sid) == -1
    assert lab.weblab.clean_expired_users() == 1  # weblablib's API, no Flask context needed
    events = _events(caplog, lab.app)
    assert [(e["action"], e["reason"]) for e in events] == [
        ("expiry_detected", "time_limit_reached"),
        ("disposed", "time_limit_reached"),
    ]
    assert events[0]["seconds_past_max_date"] >= 19


def test_1_bulk_status_detects_each_expiry_once(lab, logs):
    caplog = logs(lab.app)
    rlms = FakeRLMS.for_app(lab.app)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    over = [rlms.start({}, assigned_time=10, start=start).session_id for _ in range(2)]
    live = rlms.start({}).session_id
    ids = [*over, live, "never-existed"]
    assert rlms.bulk_status(ids) == {over[0]: -1, over[1]: -1, live: 5, "never-existed": -1}
    assert rlms.bulk_status(ids)[over[0]] == -1  # asked again: no new event
    events = _events(caplog, lab.app)
    assert sorted(e["session_id_hash"] for e in events) == sorted(_hash(s) for s in over)
    kinds = {(e["action"], e["reason"]) for e in events}
    assert kinds == {("expiry_detected", "time_limit_reached")}


def test_1_events_can_be_turned_off(redis_url, redis_base, caplog):
    app = lab_app("quietlab", redis_url, redis_base, WEBLAB_LOG_SESSION_LIFECYCLE=False)
    weblab = WebLab(app)
    try:
        caplog.set_level(logging.INFO, logger=app.logger.name)
        assert app.test_client().get("/weblab/sessions/api").status_code == 200
        rlms = FakeRLMS.for_app(app)
        rlms.dispose(rlms.start({}).session_id)
        assert not _events(caplog, app)
    finally:
        weblab.shutdown(app)


# -- 2. stop() before the task starts -----------------------------------------------------
def test_2_a_task_stopped_before_it_starts_still_runs_with_the_flag(lab):
    rlms = FakeRLMS.for_app(lab.app)
    _enter(rlms)
    task_id = rlms.client.post("/calibrate").get_json()["task_id"]
    task = lab.weblab.get_task(task_id)  # a script: no Flask context (point 4)
    task.stop()
    assert task.retrieve().status == "submitted" and task.stopping
    lab.weblab.run_tasks()  # what `flask weblab run-tasks` does
    task.retrieve()
    assert task.done and task.result == {"stopping": True, "done": 0}


def test_2_join_tasks_stop_true_before_they_start(lab):
    rlms = FakeRLMS.for_app(lab.app)
    _enter(rlms)
    ids = [rlms.client.post("/calibrate").get_json()["task_id"] for _ in range(2)]
    assert rlms.client.post("/calibrate/stop").get_json() == {"stopping": [True, True]}
    lab.weblab.run_tasks()
    tasks = [lab.weblab.get_task(task_id) for task_id in ids]
    assert [(t.status, t.result["stopping"]) for t in tasks] == [("done", True)] * 2


def test_2_a_device_task_stopped_before_it_starts_never_reaches_the_device(load_lab, monkeypatch):
    monkeypatch.setenv("LAB_THREADS", "2")  # runner threads here, holding the lamp
    lab = load_lab("weblablib_lab")
    lab.app.test_client().get("/weblab/sessions/api")  # the first request starts them
    lamp = lab.Lamp
    lamp.switched.clear()
    with lab.app.app_context():
        holding = lab.hold.delay()  # keeps the lamp's runner busy
        light = lab.light.delay()
        light.stop()
        assert light.retrieve().status == "submitted"
        lab.go.set()
        assert holding.join(timeout=30).done
        light.join(timeout=30)
    assert light.failed and light.error["class"] == "OperationCancelled", light.error
    assert lamp.switched == []  # returned at its first safe point, before the device


# -- 3. the CLI on app.cli ----------------------------------------------------------------
def test_3_the_weblab_group_is_on_app_cli(lab):
    runner = lab.app.test_cli_runner()
    result = runner.invoke(args=["weblab", "fake", "new", "--dont-open-browser"])
    assert result.exit_code == 0, result.output
    status = runner.invoke(args=["weblab", "fake", "status"])
    assert status.exit_code == 0 and "Should finish:" in status.output
    disposed = runner.invoke(args=["weblab", "fake", "dispose"])
    assert disposed.exit_code == 0 and "Deleted" in disposed.output
    top = runner.invoke(args=["clean-expired-users"])  # the seed's top-level command
    assert top.exit_code == 0, top.output


def test_3_one_group_object_listed_once(lab, lab_env):
    """``flask`` finds ``weblab`` both on app.cli and as a flask.commands entry point: the
    same object, listed once, and ``flask weblab`` works."""
    from labruntime.cli.weblab import weblab_group

    assert lab.app.cli.commands["weblab"] is weblab_group
    flask = [str(Path(sys.executable).parent / "flask"), "--app", str(LAB_FILE)]
    env = {**os.environ, **lab_env}
    listing = subprocess.run([*flask, "--help"], capture_output=True, text=True, env=env)
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.startswith("  ")]
    assert names.count("weblab") == 1 and names.count("run-tasks") == 1, listing.stdout
    group = subprocess.run([*flask, "weblab", "--help"], capture_output=True, text=True, env=env)
    assert group.returncode == 0 and "fake" in group.stdout, group.stderr


def test_3_the_cli_says_session_not_found(lab):
    result = lab.app.test_cli_runner().invoke(args=["weblab", "fake", "status"])
    assert result.exit_code != 0 and "Session not found" in result.output


# -- 4. get_task outside a Flask context --------------------------------------------------
def test_4_get_task_from_a_script(lab):
    assert lab.weblab.get_task("no-such-task-id-00000000000000000") is None
    with lab.app.app_context():
        task = lab.calibrate.delay(3)
    assert lab.weblab.get_task(task.task_id) == task
    lab.weblab.run_tasks()
    assert lab.weblab.get_task(task.task_id).result == {"stopping": False, "done": 3}


def test_4_a_weblab_serving_two_apps_asks_for_a_context(redis_url, redis_base):
    weblab = WebLab()
    apps = [lab_app(f"two{n}", redis_url, f"{redis_base}{n}") for n in range(2)]
    for app in apps:
        weblab.init_app(app)
    try:
        with pytest.raises(NoContextError, match="app_context"):
            weblab.get_task("x")
    finally:
        for app in apps:
            weblab.shutdown(app)


# -- 5. dispose is idempotent --------------------------------------------------------------
def test_5_dispose_again_says_deleted_unknown_says_not_found(lab):
    rlms = FakeRLMS.for_app(lab.app)
    sid = _enter(rlms)
    assert rlms.dispose(sid) == {"message": "Deleted"}
    assert rlms.dispose(sid) == {"message": "Deleted"}
    assert rlms.dispose("never-existed") == {"message": "Not found"}


# -- 6. setup errors are ValueErrors -------------------------------------------------------
def test_6_init_app_none():
    with pytest.raises(ValueError, match="app must be a Flask app"):
        WebLab().init_app(None)  # type: ignore[arg-type]


def test_6_second_weblab_on_one_app(lab):
    with pytest.raises(ValueError) as info:
        WebLab(lab.app)
    assert isinstance(info.value, AlreadyInitializedError)


@pytest.mark.parametrize("value", ["", None, "/"])
def test_6_empty_callback_url_is_refused(redis_url, redis_base, value):
    app = lab_app("cb", redis_url, redis_base, WEBLAB_CALLBACK_URL=value)
    with pytest.raises(ValueError, match="Empty URL") as info:
        WebLab(app)
    assert isinstance(info.value, InvalidConfigError)


# -- 7. weblablib's key phrases ------------------------------------------------------------
def test_7_duplicate_task_name():
    weblab = WebLab()

    @weblab.task()
    def work():
        pass

    with pytest.raises(ValueError, match="same name"):

        @weblab.task()
        def work():  # noqa: F811
            pass


@pytest.mark.parametrize("key", ["WEBLAB_USERNAME", "WEBLAB_PASSWORD"])
def test_7_missing_settings(redis_url, redis_base, key):
    app = lab_app("missing", redis_url, redis_base)
    del app.config[key]
    with pytest.raises(ValueError, match=f"Missing {key}"):
        WebLab(app)


def test_7_thread_settings(redis_url, redis_base):
    app = lab_app("threads", redis_url, redis_base, WEBLAB_NO_THREAD=True)
    app.config["WEBLAB_AUTOCLEAN_THREAD"] = True
    with pytest.raises(ValueError, match="incompatible with WEBLAB_AUTOCLEAN_THREAD"):
        WebLab(app)


def test_7_wrong_rlms_credentials(lab):
    client = lab.app.test_client()
    test = client.get("/weblab/sessions/test", auth=("weblabdeusto", "wrong"))
    assert test.status_code == 401
    assert "Invalid credentials: wrong username provided" in test.get_json()["error_messages"][0]
    start = client.post("/weblab/sessions/", json={}, auth=("someone", "wrong"))
    assert start.status_code == 401
    assert "You don't seem to be a WebLab-Instance" in start.get_json()["message"]


def test_7_a_task_joining_itself(lab):
    with lab.app.app_context():
        task = lab.join_myself.delay()
    lab.weblab.run_tasks()
    task.retrieve()
    assert task.failed and "Deadlock" in task.error["message"]


# -- 8. SECRET_KEY --------------------------------------------------------------------------
def test_8_no_secret_key_is_accepted_at_init_app_and_named_at_the_first_student(
    redis_url, redis_base
):
    app = lab_app("nosecret", redis_url, redis_base)
    app.config["SECRET_KEY"] = None  # never set, as in a new Flask app
    weblab = WebLab(app)  # as weblablib: tests that never use the session build such apps
    try:

        @weblab.initial_url
        def initial_url():
            return "/"

        assert app.test_client().get("/weblab/sessions/api").status_code == 200
        rlms = FakeRLMS.for_app(app)
        started = rlms.start({})
        entered = rlms.client.get(started.url)
        assert entered.status_code == 500 and "SECRET_KEY" in entered.get_data(as_text=True)
    finally:
        weblab.shutdown(app)
