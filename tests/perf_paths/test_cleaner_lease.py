"""One cleaner per lab: the web processes' cleaners elect one through a lease in Redis (the
others look once when the leader's lease could lapse, one round trip); a leader that stops
gives the lease up; a `loop` worker's cleaner runs no pass while a web cleaner leads."""

from __future__ import annotations

import time

from labruntime.sessions.cleaner import DEFER_LOOK, LEASE
from labruntime.state import get_state
from tests._helpers import wait_for


def test_the_lease_is_taken_renewed_and_given_up_by_its_holder(perf_lab, redis_calls):
    store = get_state(perf_lab.app).sessions.store
    store.release_cleaner("nobody")  # connected, script loaded; nothing held
    assert store.lead_cleaner("a", 10.0) is None  # taken
    with redis_calls() as calls:
        left = store.lead_cleaner("b", 10.0)
    assert calls.round_trips == 1
    assert left is not None and 9.0 < left <= 10.0  # a leads: b looks again then
    assert store.lead_cleaner("a", 10.0) is None  # renewed
    store.release_cleaner("b")  # not its lease: kept
    assert store.lead_cleaner("b", 10.0) is not None
    with redis_calls() as calls:
        store.release_cleaner("a")
    assert calls.round_trips == 1
    assert store.lead_cleaner("b", 10.0) is None  # given up: the next one takes it


def test_a_follower_makes_one_round_trip_per_lease_and_runs_no_pass(perf_lab, redis_calls):
    state = get_state(perf_lab.app)
    perf_lab.rlms.start(username="still-here", assigned_time=600)
    leader, follower = state.new_cleaner(), state.new_cleaner()
    passes: list[str] = []
    real_pass = follower._run_pass
    follower._run_pass = lambda: passes.append("pass") or real_pass()  # type: ignore[method-assign]
    leader.start()
    try:
        deadline = time.monotonic() + 10
        while leader.renewed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert leader.renewed is not None
        with redis_calls(this_thread_only=True) as calls:  # the leader's passes go on
            wait = follower._follow()
        assert calls.round_trips == 1
        assert wait is not None and LEASE / 2 < wait <= LEASE + 0.1  # the leader's lease left
        follower.start()
        time.sleep(0.3)
        assert follower.renewed is None and passes == []
        follower.stop()  # woken at once from its wait
        assert not follower.is_alive()
    finally:
        leader.stop()
    assert not leader.is_alive()
    assert state.sessions.store.lead_cleaner("next", 1.0) is None  # the leader gave it up


def test_a_leaders_idle_wake_renews_only_when_due(perf_lab, redis_calls):
    state = get_state(perf_lab.app)
    cleaner = state.new_cleaner()
    assert cleaner._follow() is None  # leads
    with redis_calls() as calls:
        assert cleaner._follow() is None  # renewed just now: no round trip
    assert calls.round_trips == 0
    cleaner.renewed = time.monotonic() - LEASE  # as if RENEW had gone by
    with redis_calls() as calls:
        assert cleaner._follow() is None
    assert calls.round_trips == 1


def test_a_loop_workers_cleaner_defers_to_a_leading_web_cleaner(perf_lab, redis_calls):
    state = get_state(perf_lab.app)
    perf_lab.rlms.start(username="still-here", assigned_time=600)
    worker_cleaner = state.new_cleaner(reap=False)  # as `labruntime loop` makes it
    assert worker_cleaner._follow() is None  # nobody leads: it runs the passes itself
    web = state.new_cleaner()
    web.start()
    passes: list[str] = []
    real_pass = worker_cleaner._run_pass
    worker_cleaner._run_pass = lambda: passes.append("pass") or real_pass()  # type: ignore[method-assign]
    try:
        wait_for(lambda: web.renewed is not None, 10, "the web cleaner to lead")
        with redis_calls(this_thread_only=True) as calls:
            wait = worker_cleaner._follow()
        assert calls.round_trips == 1 and calls.names() == ["PTTL"]
        assert wait == DEFER_LOOK and DEFER_LOOK >= LEASE  # no pass: it looks again later
        worker_cleaner.start()
        time.sleep(0.3)
        assert passes == [] and worker_cleaner.renewed is None  # never takes the lease
        worker_cleaner.stop()  # woken at once from its wait
        assert not worker_cleaner.is_alive()
    finally:
        web.stop()
    assert worker_cleaner._follow() is None  # the web cleaner gave the lease up: passes again
