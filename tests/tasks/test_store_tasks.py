"""TaskStore on a real Redis: claiming, final states written once, stop, reaping, locks."""

from __future__ import annotations

import json
import threading
import time

import redis

from labruntime.store.tasks import TaskStore


def _enqueue(store: TaskStore, task_id: str, session: str | None = "s1", lock: str | None = None):
    return store.enqueue(
        task_id, "work", session, json.dumps([1, 2]), json.dumps({"k": 3}), lock=lock
    )


def test_enqueue_take_claim_finish(task_store: TaskStore) -> None:
    assert _enqueue(task_store, "a")
    rec = task_store.get("a")
    assert rec is not None and rec.status == "submitted" and rec.session_id == "s1"
    assert rec.args == [1, 2] and rec.kwargs == {"k": 3}
    task_store.heartbeat("w1", 5, {})
    assert task_store.take("default", "w1", 0.1) == "a"
    claimed = task_store.claim("a", "w1", 5)
    assert claimed is not None and claimed.status == "running" and claimed.worker == "w1"
    assert task_store.unfinished_ids("s1") == ["a"]
    assert task_store.finish("a", "done", worker_id="w1", result_json="42", data_json='{"p": 1}')
    rec = task_store.get("a")
    assert rec.status == "done" and rec.result == 42 and rec.data == {"p": 1}
    assert task_store.unfinished_ids("s1") == []
    assert task_store.wait_final("a", 0.1)
    # written once: a late second finish changes nothing
    assert not task_store.finish("a", "failed", error={"code": "x"})
    assert task_store.get("a").status == "done"


def test_claim_only_once(task_store: TaskStore) -> None:
    _enqueue(task_store, "a")
    assert task_store.claim("a", "w1", 5) is not None
    assert task_store.claim("a", "w2", 5) is None


def test_fifo_and_blocking_take_wakes(task_store: TaskStore) -> None:
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(task_store.take("default", "w1", 5)))
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    _enqueue(task_store, "first")
    t.join(5)
    assert got == ["first"] and time.perf_counter() - start < 1
    _enqueue(task_store, "b")
    _enqueue(task_store, "c")
    assert [task_store.take("default", "w1", 0), task_store.take("default", "w1", 0)] == ["b", "c"]
    assert task_store.take("default", "w1", 0) is None


def test_stop_before_start_flags_it_and_it_still_runs(task_store: TaskStore) -> None:
    _enqueue(task_store, "a")
    assert task_store.stop("a") == "flagged"  # weblablib: the task runs, with the flag raised
    rec = task_store.get("a")
    assert rec.status == "submitted" and rec.stopping
    assert task_store.take("default", "w1", 0) == "a"
    claimed = task_store.claim("a", "w1", 5)
    assert claimed is not None and claimed.status == "running" and claimed.stopping


def test_stop_cancelling_unstarted_never_starts(task_store: TaskStore) -> None:
    _enqueue(task_store, "a")
    assert task_store.stop("a", cancel_unstarted=True) == "finalized"  # a session's dispose
    rec = task_store.get("a")
    assert rec.status == "failed" and rec.error["code"] == "stopped" and rec.stopping
    assert task_store.take("default", "w1", 0) == "a"
    assert task_store.claim("a", "w1", 5) is None
    assert task_store.stop("a") is None


def test_stop_running_publishes_to_its_worker(
    task_store: TaskStore, redis_client: redis.Redis
) -> None:
    _enqueue(task_store, "a")
    task_store.claim("a", "w1", 5)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(task_store.stop_channel("w1"))
    pubsub.get_message(timeout=1)
    assert task_store.stop("a") == "running"
    msg = pubsub.get_message(timeout=1)
    pubsub.close()
    assert msg["data"] == "a"
    assert task_store.heartbeat("w1", 5, {}) == ["a"]


def test_reap_dead_worker(task_store: TaskStore, redis_client: redis.Redis) -> None:
    lock = task_store.lock_key("work", "global", None)
    _enqueue(task_store, "a", lock=lock)
    _enqueue(task_store, "b")
    task_store.heartbeat("w1", 0.2, {})
    assert task_store.take("default", "w1", 0) == "a"
    task_store.claim("a", "w1", 0.2)
    assert task_store.take("default", "w1", 0) == "b"  # taken, not yet claimed
    assert task_store.reap_dead(grace=0) == 0  # still alive
    time.sleep(0.3)
    assert task_store.reap_dead(grace=0) == 1
    rec = task_store.get("a")
    assert rec.status == "failed" and rec.error["code"] == "worker-lost"
    assert redis_client.get(lock) is None
    assert task_store.get("b").status == "submitted"
    assert task_store.take("default", "w2", 0) == "b"  # requeued, never started
    assert task_store.workers() == []


def test_a_lapsed_lease_is_reaped_only_after_the_grace_seen_by_reapers(
    task_store: TaskStore,
) -> None:
    """An outage longer than the lease: the worker's lease lapsed, but reapers give it
    REAP_GRACE seconds from the first pass that sees it; a beat in that time keeps its tasks."""
    _enqueue(task_store, "a")
    task_store.heartbeat("w1", 0.1, {})
    task_store.claim("a", "w1", 0.1)
    time.sleep(0.2)  # the lease lapsed (as after Redis was down longer than it)
    assert task_store.reap_dead(grace=0.5) == 0  # first sight: only noted
    task_store.heartbeat("w1", 5, {})  # the live worker is back: re-registered
    time.sleep(0.6)
    assert task_store.reap_dead(grace=0.5) == 0
    assert task_store.get("a").status == "running"
    assert task_store.finish("a", "done", worker_id="w1", result_json="7")
    assert task_store.get("a").result == 7  # the result is kept
    _enqueue(task_store, "b")
    task_store.heartbeat("w2", 0.1, {})
    task_store.claim("b", "w2", 0.1)
    time.sleep(0.2)
    assert task_store.reap_dead(grace=0.3) == 0  # noted
    time.sleep(0.4)
    assert task_store.reap_dead(grace=0.3) == 1  # no beat within the grace: dead
    assert task_store.get("b").error["code"] == "worker-lost"


def test_unique_lock_rejects_while_unfinished(task_store: TaskStore) -> None:
    lock = task_store.lock_key("work", "user", "s1")
    assert _enqueue(task_store, "a", lock=lock)
    assert not _enqueue(task_store, "b", lock=lock)
    assert task_store.get("b") is None
    assert not task_store.lock(lock, "sync:x", 5)
    task_store.stop("a")  # flagged, not final: it will still run, so it keeps the lock
    assert not _enqueue(task_store, "c", lock=lock)
    task_store.stop("a", cancel_unstarted=True)  # final: the lock is free
    assert _enqueue(task_store, "c", lock=lock)


def test_sync_lock_is_a_lease(task_store: TaskStore) -> None:
    lock = task_store.lock_key("work", "global", None)
    assert task_store.lock(lock, "sync:1", 0.2)
    assert not _enqueue(task_store, "a", lock=lock)
    time.sleep(0.3)
    assert _enqueue(task_store, "a", lock=lock)


def test_fail_unfinished_and_session_listing(task_store: TaskStore) -> None:
    _enqueue(task_store, "a")
    _enqueue(task_store, "b")
    task_store.claim("a", "w1", 5)
    assert [r.task_id for r in task_store.session_tasks("s1")] == ["a", "b"]
    err = {"code": "dispose-timeout", "class": "DisposeTimeout", "message": "m"}
    assert task_store.fail_unfinished("s1", err) == 2
    assert {r.error["code"] for r in task_store.session_tasks("s1")} == {"dispose-timeout"}
    assert not task_store.finish("a", "done", worker_id="w1", result_json="1")


def test_finished_tasks_expire_after_task_expires(
    task_store: TaskStore, redis_client: redis.Redis
) -> None:
    _enqueue(task_store, "a")
    key = task_store.prefix + "task:a"
    assert redis_client.ttl(key) == -1  # unfinished: kept
    task_store.claim("a", "w1", 5)
    task_store.finish("a", "done", worker_id="w1", result_json="1")
    assert 0 < redis_client.ttl(key) <= task_store.expires == 60
    assert 0 < redis_client.ttl(task_store.prefix + "tasks:session:s1") <= 60
