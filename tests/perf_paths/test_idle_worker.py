"""An idle worker blocks on Redis instead of waking many times a second: its runners block
TAKE_BLOCK (30) seconds on the queue (stop() wakes them at once), its beat is one round trip that
also reads what the reaper pass needs, its stop listener blocks LISTEN_BLOCK seconds."""

from __future__ import annotations

import time

import pytest

from labruntime.state import get_state
from labruntime.tasks.worker import HEARTBEAT, TAKE_BLOCK, WorkerGroup


@pytest.mark.slow
def test_an_idle_worker_sends_one_round_trip_per_beat(perf_lab, redis_calls):
    tasks = get_state(perf_lab.app).tasks
    group = WorkerGroup(tasks, threads=5, kind="loop").start()
    try:
        time.sleep(HEARTBEAT + 0.3)  # connected, first beat sent, runners blocked
        window = 2 * HEARTBEAT
        with redis_calls() as calls:
            time.sleep(window)
    finally:
        assert group.stop(timeout=TAKE_BLOCK / 2)  # blocked runners woken, not timed out
    names = calls.names()
    assert "BLMOVE" not in names  # no runner's take timed out and started again
    assert set(names) <= {"EVALSHA"}, names  # the beats: SMEMBERS, LRANGE... inside them
    assert calls.round_trips == len(names) <= window / HEARTBEAT + 1


def test_a_stopped_worker_gives_back_nothing_and_runs_what_was_queued(perf_lab):
    tasks = get_state(perf_lab.app).tasks
    group = WorkerGroup(tasks, threads=2, kind="loop").start()
    try:
        with perf_lab.app.test_request_context("/lab"):
            task = perf_lab.add.delay(2, 3)
            assert task.join(timeout=10).result == 5  # a blocked runner took it
    finally:
        assert group.stop(timeout=TAKE_BLOCK / 2)
    assert tasks.store.processing_ids(group.worker_id) == []


def test_the_cleaners_reaper_looks_when_a_lease_can_lapse(perf_lab, redis_calls):
    """REAP_LATE s after it could lapse: as late as a live worker's beat would see it."""
    from labruntime.tasks.service import REAP_EVERY, REAP_LATE
    from labruntime.tasks.worker import HEARTBEAT

    assert REAP_LATE <= HEARTBEAT  # worker-lost within LEASE + HEARTBEAT + REAP_GRACE

    tasks = get_state(perf_lab.app).tasks
    assert tasks.reap_dead() is None  # no worker: nothing to look at
    tasks.store.heartbeat("w-live", 4.0, {})
    with redis_calls() as calls:
        due = tasks.reap_dead()
    assert calls.round_trips == 1
    assert due is not None and 3.0 + REAP_LATE < due - time.time() <= 4.0 + REAP_LATE
    tasks.store.heartbeat("w-gone", 0.05, {})
    time.sleep(0.1)
    due = tasks.reap_dead()  # lapsed, within its grace: looked at again soon
    assert due is not None and due - time.time() <= REAP_EVERY


@pytest.mark.slow
def test_a_blocking_take_outlasts_the_clients_default_socket_timeout(perf_lab, redis_calls):
    store = get_state(perf_lab.app).tasks.store
    store.take("default", "w-long", 0.1)  # connected
    with redis_calls() as calls:
        assert store.take("default", "w-long", 6.0) is None  # redis-py's default cuts at 5 s
    assert calls.names() == ["BLMOVE"]  # no error, no reconnect
    store.release_takers("w-long")
