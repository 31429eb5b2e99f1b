"""Lifecycle: on_dispose exactly once whatever ended the session, the cleaner, busy disposes."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from labruntime import WebLab, weblab_user
from labruntime.redact import session_hash
from labruntime.state import get_state
from tests._helpers import wait_for
from tests._labs import PASSWORD, USER, lab_app


def test_cleaner_thread_ends_finished_slot(make_lab):
    lab = make_lab(WEBLAB_AUTOCLEAN_THREAD=True, WEBLAB_CLEANER_INTERVAL=0.1)
    sid = lab.new_session(sd=lab.server_data(length=0.4))
    assert lab.state.cleaner is not None and lab.state.cleaner.is_alive()
    wait_for(lambda: lab.disposed == [sid], 5, "the cleaner to end the session")
    time.sleep(0.3)
    assert lab.disposed == [sid]
    assert lab.status(sid) == -1


def test_cleaner_thread_ends_poll_timeout(make_lab, caplog):
    caplog.set_level(logging.INFO, logger="labruntime.sessions")
    lab = make_lab(WEBLAB_AUTOCLEAN_THREAD=True, WEBLAB_CLEANER_INTERVAL=0.1, WEBLAB_TIMEOUT=0.3)
    sid = lab.new_session()
    wait_for(lambda: lab.disposed == [sid], 5, "the cleaner to end the session")
    events = [r.weblab["event"] for r in caplog.records if hasattr(r, "weblab")]
    assert events[:2] == ["start", "timeout"] and "dispose" in events


def test_no_thread_means_no_cleaner(make_lab):
    lab = make_lab(WEBLAB_AUTOCLEAN_THREAD=None, WEBLAB_NO_THREAD=True)
    lab.new_session()
    assert lab.state.cleaner is None


def test_no_background_thread_before_first_request(make_lab):
    lab = make_lab(WEBLAB_AUTOCLEAN_THREAD=True)
    assert lab.state.cleaner is None
    lab.client.get("/weblab/sessions/api")
    assert lab.state.cleaner is not None


def test_on_dispose_exactly_once_under_races(make_lab):
    lab = make_lab()
    slow = threading.Event()

    @lab.replace_hook("on_dispose")
    def dispose():
        lab.disposed.append(weblab_user.session_id)
        slow.wait(0.2)

    sid = lab.new_session(sd=lab.server_data(length=0.2))
    lab.enter(sid)
    lab.client.post(f"/callback/{sid}/logout")
    time.sleep(0.25)
    barrier = threading.Barrier(6)
    results = []

    def rlms():
        barrier.wait()
        with lab.app.app_context():
            results.append(lab.state.dispose(sid, "rlms").done)

    def cleaner():
        barrier.wait()
        results.append(lab.weblab.clean_expired_users(lab.app))

    threads = [threading.Thread(target=rlms) for _ in range(3)]
    threads += [threading.Thread(target=cleaner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert lab.disposed == [sid]
    assert lab.dispose(sid) == {"message": "Deleted"}  # idempotent


def test_on_dispose_data_changes_are_kept(make_lab):
    lab = make_lab()

    @lab.replace_hook("on_dispose")
    def dispose():
        weblab_user.data["result"] = 42
        assert weblab_user.active is False

    sid = lab.new_session()
    lab.dispose(sid)
    with lab.app.app_context():
        assert lab.state.load_user(sid).data == {"started": True, "result": 42}


def test_on_dispose_raising_still_ends_session(make_lab):
    lab = make_lab()

    @lab.replace_hook("on_dispose")
    def dispose():
        raise RuntimeError("board stuck")

    sid = lab.new_session()
    assert lab.dispose(sid) == {"message": "Deleted"}
    assert lab.status(sid) == -1


class BusyWork:
    """Session work that takes two dispose rounds to end (in place of the task step)."""

    def __init__(self) -> None:
        self.busy_rounds = 2

    def __call__(self, session_id: str) -> float | None:
        if self.busy_rounds:
            self.busy_rounds -= 1
            return 2.5
        return None


def test_dispose_waits_for_work(redis_url, redis_base, monkeypatch):
    app = lab_app("busy", redis_url, redis_base)
    weblab = WebLab(app)
    monkeypatch.setattr(get_state(app).tasks, "dispose_steps", BusyWork())
    disposed = []
    weblab.on_dispose(lambda: disposed.append(weblab_user.session_id))
    weblab.initial_url(lambda: "/")
    client = app.test_client()
    auth = (USER, PASSWORD)
    body = {"client_initial_data": {}, "server_initial_data": {"priority.queue.slot.length": 60}}
    sid = client.post("/weblab/sessions/", json=body, auth=auth).get_json()["session_id"]
    client.get(f"/callback/{sid}")
    first = client.post(f"/weblab/sessions/{sid}", json={"action": "delete"}, auth=auth)
    reply = first.get_json()
    assert reply["finished"] is False and reply["ask_again"] == 3 and reply["should_finish"] == 3
    assert "data" not in reply and reply["message"]
    assert disposed == []
    status = client.get(f"/weblab/sessions/{sid}/status", auth=auth).get_json()
    assert status == {"should_finish": 1}
    assert client.post(f"/callback/{sid}/poll").get_json()["success"] is False
    with app.app_context():
        assert weblab.clean_expired_users(app) == 0  # not due yet: retry scheduled
        assert get_state(app).dispose(sid, "rlms").retry_in == 2.5
    done = client.post(f"/weblab/sessions/{sid}", json={"action": "delete"}, auth=auth)
    assert done.get_json() == {"message": "Deleted"}
    assert disposed == [sid]
    weblab.shutdown(app)


def test_two_labs_on_one_redis_stay_apart(make_lab, redis_base):
    lab_a = make_lab()
    lab_b = make_lab(WEBLAB_REDIS_BASE=redis_base + "b")
    sid = lab_a.new_session(sd=lab_a.server_data(length=0.2))
    assert lab_b.status(sid) == -1
    assert lab_b.dispose(sid) == {"message": "Not found"}
    time.sleep(0.3)
    assert lab_b.weblab.clean_expired_users(lab_b.app) == 0
    assert lab_a.disposed == [] and lab_b.disposed == []
    assert lab_a.weblab.clean_expired_users(lab_a.app) == 1
    assert lab_a.disposed == [sid]
    redis = lab_a.state.connection.client
    assert all(k.startswith(redis_base + ":") for k in redis.scan_iter(f"{redis_base}:*"))
    assert not list(redis.scan_iter(f"{redis_base}b:*"))


def test_redis_down_is_a_clear_503(make_lab, tmp_path):
    lab = make_lab(WEBLAB_REDIS_URL=f"unix://{tmp_path}/nothing.sock")
    reply = lab.client.get("/weblab/sessions/abc/status", headers=lab.basic())
    assert reply.status_code == 503 and reply.content_type == "application/json"
    body = reply.get_json()
    assert body["error"] is True and "unavailable" in body["message"]
    start = lab.start()
    assert start.status_code == 503 and start.get_json()["error"] is True
    with lab.client.session_transaction() as flask_session:
        flask_session["weblab_session_id"] = "abc"
    page = lab.client.get("/lab/")
    assert page.status_code == 503 and page.content_type.startswith("text/html")
    assert b"Traceback" not in page.data and b"unavailable" in page.data


@pytest.mark.slow
def test_cleaner_thread_survives_redis_down(make_lab, tmp_path, caplog):
    lab = make_lab(
        WEBLAB_REDIS_URL=f"unix://{tmp_path}/nothing.sock",
        WEBLAB_AUTOCLEAN_THREAD=True,
        WEBLAB_CLEANER_INTERVAL=0.1,
    )
    lab.client.get("/weblab/sessions/api")
    wait_for(lambda: "cleaner: Redis is unavailable" in caplog.text, 5, "the cleaner to warn")
    assert lab.state.cleaner.is_alive()


def test_lifecycle_records_are_structured(make_lab, caplog):
    caplog.set_level(logging.INFO, logger="labruntime")
    lab = make_lab()
    sid = lab.new_session()
    lab.client.get("/weblab/sessions/test", headers=lab.basic("eve", "nope"))
    lab.dispose(sid)
    records = [r.weblab for r in caplog.records if hasattr(r, "weblab")]
    events = [(r["event"], r.get("session")) for r in records]
    tag = session_hash(sid)  # the session id is the student's login link: never in a log
    assert events == [
        ("start", tag),
        ("rejected", None),
        ("dispose", tag),
        ("dispose", tag),
    ]
    assert "username" not in records[0] and records[1]["username"] == "eve"  # the RLMS's
    assert records[2]["reason"] == "rlms"
    assert not [r for r in caplog.records if sid in r.getMessage() or "jdoe" in r.getMessage()]


def test_lifecycle_logging_can_be_turned_off(make_lab, caplog):
    caplog.set_level(logging.INFO, logger="labruntime.sessions")
    lab = make_lab(WEBLAB_LOG_SESSION_LIFECYCLE=False)
    lab.dispose(lab.new_session())
    assert not [r for r in caplog.records if hasattr(r, "weblab")]
