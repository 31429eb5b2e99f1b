"""A student's request reads only what it needs, and reads it from Redis only when it changed.

The RLMS's initial data is not loaded until the lab reads it, so a request costs the same
whatever its size. The small fields a request needs are remembered by the web process while
Redis signals no change (labruntime.store.session_cache): a student's repeated requests cost
no round trip, their polls are written once per poll window, and any change (another
process's included) is seen by the next request.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import redis

from labruntime.state import get_state
from labruntime.store.sessions import poll_window
from tests._helpers import wait_for

BIG = {f"key{i}": "x" * 200 for i in range(200)}  # ~40 KB of client initial data


def _store(perf_lab: Any) -> Any:
    """The lab's session store, once its cache listens (it starts on first use)."""
    store = get_state(perf_lab.app).sessions.store
    wait_for(lambda: store.cache.live, 5, "the session cache to listen")
    return store


def _warm(student: Any, redis_calls: Any) -> None:
    """Request the lab until a request costs no round trip (the first reads Redis; an
    invalidation of the session's own start may make the second read it again)."""
    for _ in range(5):
        with redis_calls(this_thread_only=True) as calls:
            assert student.get("/lab").status_code == 200
        if calls.round_trips == 0:
            return
    raise AssertionError("the student's requests never stopped reading Redis")


def test_repeated_requests_cost_no_round_trip_and_never_read_the_initial_data(
    perf_lab, redis_calls
):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    _store(perf_lab)
    with redis_calls(this_thread_only=True) as first:
        reply = student.get("/lab")
    assert reply.status_code == 200 and reply.text.startswith("hello ann")
    assert first.round_trips <= 1, first.commands  # one EVALSHA: poll and small fields
    assert not first.mention("client_data") and not first.mention("server_data")
    assert "HGETALL" not in first.names()
    _warm(student, redis_calls)
    for _ in range(5):
        with redis_calls(this_thread_only=True) as calls:
            reply = student.get("/lab")
        assert reply.status_code == 200 and reply.text.startswith("hello ann")
        assert calls.round_trips == 0, calls.commands


def test_the_poll_is_written_once_per_window(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start({}, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    store = _store(perf_lab)
    window = poll_window(get_state(perf_lab.app).config.timeout)
    _warm(student, redis_calls)
    polled = store.load_session(session_id).last_poll
    time.sleep(window + 0.05)
    with redis_calls(this_thread_only=True) as calls:
        assert student.get("/lab").status_code == 200
    assert calls.round_trips == 1 and calls.names() == ["EVALSHA"], calls.commands
    assert store.load_session(session_id).last_poll >= polled + window


def test_the_initial_data_is_read_on_first_use_once(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    _store(perf_lab)
    _warm(student, redis_calls)
    with redis_calls(this_thread_only=True) as calls:
        reply = student.get("/lab/initial")
    body = reply.get_json()
    assert body["client"] == BIG and body["again"] is True
    assert "request.username" in body["server_keys"]
    assert calls.round_trips == 1  # the initial data, once; the session was remembered


def test_the_lab_data_is_saved_and_read_back_at_the_next_request(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    _store(perf_lab)
    assert student.get("/lab/data").get_json() == {"visits": 1}
    for visits in (2, 3, 4):
        with redis_calls(this_thread_only=True) as calls:
            assert student.get("/lab/data").get_json() == {"visits": visits}
        # the read (the last save made this process forget the session), the save
        assert calls.round_trips == 2, calls.commands
        assert not calls.mention("client_data")


def test_a_user_loaded_outside_a_request_reads_its_initial_data(perf_lab):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    user = get_state(perf_lab.app).load_user(session_id)
    assert user is not None and user.username == "ann"
    assert user.request_client_data == BIG
    assert user.request_server_data["request.username"] == "ann"


_OTHER_PROCESS = """
import sys
from labruntime.store.connection import Connection
from labruntime.store.sessions import SessionStore
url, base, session_id, what = sys.argv[1:]
store = SessionStore(Connection(url, base))
if what == "dispose":
    print(store.begin_dispose(session_id, 0.0, "test"))
else:
    print(store.save_data(session_id, '{"visits": 41}'))
"""


def _in_another_process(redis_url: str, base: str, session_id: str, what: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, redis_url, base, session_id, what],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_a_change_made_by_another_process_is_seen_by_the_next_request(
    perf_lab, redis_calls, redis_url, redis_base
):
    session_id = perf_lab.rlms.start({}, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    _store(perf_lab)
    _warm(student, redis_calls)
    assert _in_another_process(redis_url, redis_base, session_id, "data") == "True"
    assert student.get("/lab/data").get_json() == {"visits": 42}  # at once, not in a second
    assert _in_another_process(redis_url, redis_base, session_id, "dispose") == "started"
    reply = student.get("/lab")
    assert reply.status_code != 200, reply.text  # the session ended: no more lab


def test_nothing_is_served_from_memory_while_the_listener_is_down(perf_lab, redis_calls, redis_url):
    session_id = perf_lab.rlms.start({}, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    store = _store(perf_lab)
    _warm(student, redis_calls)
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        listeners = [c for c in admin.client_list() if "t" in c.get("flags", "")]
        assert listeners, "no tracking connection"
        for client in listeners:  # Redis drops the listener: invalidations could be lost
            admin.client_kill_filter(_id=client["id"])
        wait_for(lambda: not store.cache.live, 5, "the cache to notice its listener is gone")
        with redis_calls(this_thread_only=True) as calls:
            assert student.get("/lab").status_code == 200
        assert calls.round_trips == 1  # read from Redis, not from memory
        wait_for(lambda: store.cache.live, 10, "the listener to reconnect")
        _warm(student, redis_calls)
    finally:
        admin.close()


def test_without_the_cache_every_request_reads_redis_and_records_its_poll(
    redis_url, redis_base, tmp_path, redis_calls
):
    from labruntime import WebLab, requires_active, weblab_user
    from labruntime.testing import FakeRLMS
    from tests._labs import lab_app

    app = lab_app("nocache", redis_url, redis_base, str(tmp_path / "i"), WEBLAB_SESSION_CACHE=False)
    weblab = WebLab(app)
    weblab.initial_url(lambda: "/lab")

    @app.route("/lab")
    @requires_active
    def lab() -> str:
        return f"hello {weblab_user.username}"

    try:
        session_id = FakeRLMS.for_app(app).start({}, username="ann").session_id
        student = app.test_client()
        assert student.get(f"/callback/{session_id}").status_code in (302, 303)
        store = get_state(app).sessions.store
        for _ in range(3):
            before = store.load_session(session_id).last_poll
            time.sleep(0.01)
            with redis_calls(this_thread_only=True) as calls:
                assert student.get("/lab").text == "hello ann"
            assert calls.round_trips == 1
            assert store.load_session(session_id).last_poll > before
        assert get_state(app).connection._cache is None  # no listener started
    finally:
        weblab.shutdown(app)
