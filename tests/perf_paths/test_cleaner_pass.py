"""A cleaner pass ends many expired sessions in batches: a few round trips per batch, not
several per session, and more than 500 sessions per pass when more are due."""

from __future__ import annotations

import logging
import time

from flask import session

from labruntime.sessions.manager import CLEAN_BATCH
from labruntime.state import get_state
from labruntime.store.records import SessionRecord


def _expired_sessions(perf_lab, count: int, prefix: str = "gone") -> list[str]:
    store = get_state(perf_lab.app).sessions.store
    now = time.time()
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    for sid in ids:
        record = SessionRecord(
            session_id=sid, username=sid, start_date=now - 600, max_date=now - 1, last_poll=now
        )
        store.create_session(record, check_at=now - 1, ttl=3600)
    return ids


def test_a_pass_ends_1200_expired_sessions_in_few_round_trips(perf_lab, redis_calls, caplog):
    ids = _expired_sessions(perf_lab, 1200)
    live = perf_lab.rlms.start(username="still-here", assigned_time=600).session_id
    state = get_state(perf_lab.app)
    with caplog.at_level(logging.INFO), redis_calls() as calls:
        ended = state.clean()
    assert ended == 1200
    assert sorted(perf_lab.disposed) == ids  # on_dispose once per session, with its user
    # per batch of CLEAN_BATCH: due, states, schedule, begin, task step (2), claim, finish;
    # once: the reaper's look at the workers, each script's first use (NOSCRIPT, LOAD)
    batches = -(-1200 // CLEAN_BATCH)
    assert calls.round_trips <= 8 * batches + 1 + 2 * 5, calls.names()
    assert calls.round_trips / 1200 < 0.05
    with perf_lab.app.app_context():
        for sid in (ids[0], ids[-1]):
            user = state.load_user(sid)
            assert user is not None and type(user).__name__ == "ExpiredUser"
        alive = state.load_user(live)
        assert alive is not None and alive.active
    assert state.clean() == 0  # nothing due any more
    events = [r.getMessage() for r in caplog.records if "expiry_detected" in r.getMessage()]
    assert len(events) == 1200  # one lifecycle event per session, as the one-by-one path


def test_a_session_with_unfinished_tasks_waits_while_the_others_end(perf_lab, redis_calls):
    ids = _expired_sessions(perf_lab, 30)
    with perf_lab.app.test_request_context("/lab"):
        session["weblab_session_id"] = ids[0]
        task = perf_lab.add.delay(1, 2)  # no runner: stays queued, so it is stopped (failed)
    state = get_state(perf_lab.app)
    assert state.clean() == 30
    with perf_lab.app.app_context():
        assert perf_lab.weblab.get_task(task.task_id) is not None
        assert perf_lab.weblab.get_task(task.task_id).status == "failed"
    assert sorted(perf_lab.disposed) == ids


def test_an_idle_cleaner_wake_is_two_round_trips(perf_lab, redis_calls):
    state = get_state(perf_lab.app)
    perf_lab.rlms.start(username="still-here", assigned_time=600)
    state.tasks.store.heartbeat("w-live", 4.0, {})  # a registered worker: the reaper looks
    state.clean()  # scripts loaded
    for _ in range(2):
        with redis_calls() as calls:
            state.clean()
            assert state._next_due() is not None
        assert calls.round_trips == 2  # due sessions and next due; the reaper's look


def test_a_worker_process_cleaner_wake_is_one_round_trip(perf_lab, redis_calls):
    """The ``loop`` worker's cleaner leaves the reaper's look to its heartbeat (which reaps
    every HEARTBEAT s while the worker runs): an idle wake reads the sessions only, and its
    next wake is the sessions' next due time, not a worker's lease lapsing."""
    state = get_state(perf_lab.app)
    perf_lab.rlms.start(username="still-here", assigned_time=600)
    state.tasks.store.heartbeat("w-live", 4.0, {})  # a registered worker
    cleaner = state.new_cleaner(reap=False)
    cleaner._run_pass()  # scripts loaded
    for _ in range(2):
        with redis_calls() as calls:
            cleaner._run_pass()
            due = cleaner._next_due()
        assert calls.round_trips == 1, calls.commands  # due sessions and next due
        assert due is not None and due - time.time() > 10  # the session's, not the lease's
    assert state._reap_due is None
