"""Workers against faults, with real processes: Redis down longer than the worker lease, the
only worker killed. Nothing a live worker finished is thrown away; a dead one's tasks fail
``worker-lost`` within 10 s even when no other worker is alive."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from tests._helpers import wait_for

from .conftest import output

LEASE = 5.0  # labruntime.tasks.worker.LEASE


def _status(client: redis.Redis, base: str, task_id: str) -> str | None:
    try:
        return client.hget(f"{base}:task:{task_id}", "status")
    except redis.RedisError:
        return None


@pytest.mark.slow
def test_a_redis_outage_longer_than_the_lease_loses_no_result(
    private_redis, base, spawn, lab_on
) -> None:
    url = private_redis.url
    lab = lab_on(url, base)
    client = redis.Redis.from_url(url, decode_responses=True)
    workers = [spawn("loop", "--threads", "2", url=url, base=base) for _ in range(2)]
    try:
        sid = lab.rlms.start(username="alice", assigned_time=300).session_id
        with lab.as_session(sid):
            during = lab.tasks["ignore_stop"].delay(4)  # ends while Redis is down
            after = lab.tasks["ignore_stop"].delay(11)  # ends after Redis is back
        for task in (during, after):
            wait_for(lambda t=task: _status(client, base, t.task_id) == "running", 30, "a start")
        time.sleep(1.5)  # the claims reach the append-only file (fsync every second)
        os.kill(private_redis.pid, signal.SIGKILL)
        down_at = time.monotonic()
        time.sleep(LEASE + 2)  # every worker lease lapses meanwhile
        private_redis.ensure_running()  # back, from its append-only file
        print(f"Redis down {time.monotonic() - down_at:.1f} s")
        # the first reaper pass after the outage comes before the workers' next beat (as a
        # web cleaner's may): every lease has lapsed, yet no live worker may be reaped
        assert lab.app.extensions["weblab"].tasks.store.reap_dead() == 0
        for task in (during, after):
            wait_for(
                lambda t=task: _status(client, base, t.task_id) in ("done", "failed"),
                30,
                lambda: f"the end of the tasks; worker logs: {[output(w) for w in workers]}",
            )
            final = task.retrieve()
            assert final.done and final.result == "slept", final.error  # not worker-lost
        assert all(w.poll() is None for w in workers)
        logs = "".join(output(w) for w in workers)
        assert "Traceback" not in logs, logs
        assert "no heartbeat for" in logs  # the workers said they renewed a lapsed lease
    finally:
        client.close()


@pytest.mark.slow
def test_the_only_worker_killed_its_task_fails_within_10_s_with_the_web_alone(
    redis_url, base, spawn, lab_on
) -> None:
    """The Pi layout: the web runs no task thread, one worker runs the tasks. The web's
    cleaner reaps the killed worker (read here straight from Redis, not through a task
    handle, which would reap by itself)."""
    lab = lab_on(redis_url, base)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    worker = spawn("loop", "--threads", "1", url=redis_url, base=base)
    cleaner = None
    try:
        sid = lab.rlms.start(username="alice", assigned_time=300).session_id
        with lab.as_session(sid):
            task = lab.tasks["ignore_stop"].delay(60)
        wait_for(lambda: _status(client, base, task.task_id) == "running", 30, "the start")
        cleaner = lab.app.extensions["weblab"].new_cleaner()
        cleaner.start()  # the web side: its cleaner thread, nothing else
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        killed_at = time.monotonic()
        wait_for(lambda: _status(client, base, task.task_id) == "failed", 15, "worker-lost")
        seconds = time.monotonic() - killed_at
        print(f"the killed worker's task failed {seconds:.1f} s after the kill")
        assert seconds < 10
        error = client.hget(f"{base}:task:{task.task_id}", "error") or ""
        assert "worker-lost" in error
    finally:
        if cleaner is not None:
            cleaner.stop()
        client.close()
