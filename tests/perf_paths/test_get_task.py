"""``weblab.get_task(id)`` of an unknown, expired or another session's id is "not found" in a
constant number of round trips, whatever the number of the session's tasks."""

from __future__ import annotations

import pytest
from flask import session

STALE_ID = "A" * 32  # shaped like a task id (secrets.token_urlsafe(24)), never stored


def _tasks_and_trips(perf_lab, redis_calls, count: int) -> tuple[int, int, object]:
    sid = perf_lab.rlms.start(username="ann", assigned_time=600).session_id
    other = perf_lab.rlms.start(username="bob", assigned_time=600).session_id
    with perf_lab.app.test_request_context("/lab"):
        session["weblab_session_id"] = other
        others_task = perf_lab.add.delay(1, 2)
    with perf_lab.app.test_request_context("/lab"):
        session["weblab_session_id"] = sid
        for _ in range(count):
            last = perf_lab.add.delay(1, 2)
        with redis_calls() as stale:
            assert perf_lab.weblab.get_task(STALE_ID) is None
        with redis_calls() as foreign:
            assert perf_lab.weblab.get_task(others_task.task_id) is None
        by_name = perf_lab.weblab.get_task("add")
    return stale.round_trips, foreign.round_trips, (by_name, last)


@pytest.mark.parametrize("count", [10, 1000])
def test_get_task_by_a_stale_id_is_constant(perf_lab, redis_calls, count):
    stale, foreign, (by_name, last) = _tasks_and_trips(perf_lab, redis_calls, count)
    assert stale == 1 and foreign == 1
    assert by_name == last  # by name: still the latest task of that name


def test_what_looks_like_a_task_id():
    from labruntime.tasks.service import looks_like_task_id

    assert looks_like_task_id(STALE_ID) and not looks_like_task_id("add")
    assert not looks_like_task_id("x" * 33) and not looks_like_task_id("a b" * 11)
