"""A student's request reads only what it needs: the RLMS's initial data is not loaded until
the lab reads it, so a request costs the same whatever its size."""

from __future__ import annotations

BIG = {f"key{i}": "x" * 200 for i in range(200)}  # ~40 KB of client initial data


def test_a_student_view_is_one_round_trip_without_the_initial_data(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    for _ in range(3):
        with redis_calls() as calls:
            reply = student.get("/lab")
        assert reply.status_code == 200 and reply.text.startswith("hello ann")
        assert calls.round_trips == 1, calls.commands
        assert not calls.mention("client_data") and not calls.mention("server_data")
        assert "HGETALL" not in calls.names()


def test_the_initial_data_is_read_on_first_use_once(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    with redis_calls() as calls:
        reply = student.get("/lab/initial")
    body = reply.get_json()
    assert body["client"] == BIG and body["again"] is True
    assert "request.username" in body["server_keys"]
    assert calls.round_trips == 2  # the request's load, then the initial data once


def test_the_lab_data_still_round_trips(perf_lab, redis_calls):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    student = perf_lab.student(session_id)
    assert student.get("/lab/data").get_json() == {"visits": 1}
    with redis_calls() as calls:
        assert student.get("/lab/data").get_json() == {"visits": 2}
    assert calls.round_trips == 2  # load, save (it changed)
    assert not calls.mention("client_data")


def test_a_user_loaded_outside_a_request_reads_its_initial_data(perf_lab):
    session_id = perf_lab.rlms.start(BIG, username="ann", assigned_time=600).session_id
    from labruntime.state import get_state

    user = get_state(perf_lab.app).load_user(session_id)
    assert user is not None and user.username == "ann"
    assert user.request_client_data == BIG
    assert user.request_server_data["request.username"] == "ann"
