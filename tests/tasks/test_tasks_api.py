"""The task API in one process with runner threads, on a real Redis and the real session layer."""

from __future__ import annotations

import time

import pytest

from labruntime import TaskArgumentError
from labruntime.errors import AlreadyRunningError, TimeoutError


def test_delay_join_result_and_user(lab) -> None:
    sid = lab.start_session(username="alice")
    with lab.as_session(sid):
        task = lab.tasks["add"].delay(2, b=3)
        assert task.status in ("submitted", "running", "done")
        assert task.join(timeout=5).done and task.result == 5 and task.error is None
        assert task.session_id == sid and task.name == "add" and task.finished
        who = lab.tasks["whoami"].run_sync(timeout=5)
        assert who.result["username"] == "alice" and who.result["session"] == sid
        assert 0 < who.result["time_left"] <= 300
        assert lab.tasks["add"](1, 1) == 2  # a direct call runs here and now
        assert [t.name for t in lab.weblab.tasks] == ["add", "whoami"]
        assert lab.weblab.running_tasks == []


def test_exception_becomes_error_and_runner_survives(lab, caplog) -> None:
    with lab.as_session(lab.start_session()):
        failed = lab.tasks["boom"].run_sync(timeout=5)
        assert failed.failed and failed.result is None
        assert failed.error == {
            "code": "exception",
            "class": "ValueError",
            "message": "boom happened",
        }
        assert "Traceback" in caplog.text and "boom happened" in caplog.text
        for _ in range(3):  # both runner threads still alive
            assert lab.tasks["add"].run_sync(1, 2, timeout=5).result == 3


def test_json_only(lab) -> None:
    with lab.as_session(lab.start_session()):
        with pytest.raises(TaskArgumentError, match="argument 2 of add") as err:
            lab.tasks["add"].delay(1, object())
        assert isinstance(err.value, TypeError)
        with pytest.raises(TaskArgumentError, match="argument b= of add"):
            lab.tasks["add"].delay(1, b={1, 2})
        with pytest.raises(TaskArgumentError):
            lab.tasks["add"].delay(float("nan"), 1)
        assert lab.weblab.tasks == []  # nothing was queued
        bad = lab.tasks["bad_result"].run_sync(timeout=5)
        assert bad.failed and bad.error["code"] == "result-not-json"
        assert "set" in bad.error["message"]


def test_get_task_is_scoped_to_the_session(lab) -> None:
    alice, bob = lab.start_session("alice"), lab.start_session("bob")
    with lab.as_session(alice):
        task = lab.tasks["add"].run_sync(1, 1, timeout=5)
        assert lab.weblab.get_task(task.task_id) == task
        assert lab.weblab.get_task("add") == task
        assert lab.weblab.get_task(lab.tasks["add"]) == task
        assert lab.weblab.get_task(lab.tasks["add"].func) == task
        assert lab.weblab.get_task("no-such-id") is None
        assert lab.weblab.get_tasks("boom") == []
    with lab.as_session(bob):
        assert lab.weblab.get_task(task.task_id) is None
        assert lab.weblab.get_task("add") is None
        assert lab.weblab.tasks == []


def test_join_inside_the_task_is_refused(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["join_self"].run_sync(timeout=5)
        assert task.result.startswith("RuntimeError: Deadlock detected")


def test_stop_running_task_seen_quickly(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["until_stopped"].delay(10)
        for _ in range(100):
            if task.retrieve().running:
                break
            task.join(timeout=0.05, error_on_timeout=False)
        assert task.running and not task.stopping
        task.stop()
        assert task.stopping
        task.join(timeout=2)
        assert task.done and task.result.startswith("stopped after")
        assert lab.weblab.get_task(task.task_id).stopping


def test_join_timeout(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["until_stopped"].delay(10)
        with pytest.raises(TimeoutError, match="until_stopped"):
            task.join(timeout=0.2)
        assert not task.join(timeout=0.1, error_on_timeout=False).finished
        lab.weblab.join_tasks("until_stopped", timeout=3, stop=True)
        assert task.retrieve().done


def test_unique_global_and_user(lab) -> None:
    alice, bob = lab.start_session("alice"), lab.start_session("bob")
    with lab.as_session(alice):
        first = lab.tasks["only_one"].delay(10)
        with pytest.raises(AlreadyRunningError):
            lab.tasks["only_one"].delay(10)
        with pytest.raises(AlreadyRunningError):
            lab.tasks["only_one"](0.01)  # a direct call takes the same lock
        mine = lab.tasks["one_per_user"].delay(10)
        with pytest.raises(AlreadyRunningError):
            lab.tasks["one_per_user"].delay(10)
    with lab.as_session(bob):
        with pytest.raises(AlreadyRunningError):
            lab.tasks["only_one"].delay(10)
        bobs = lab.tasks["one_per_user"].delay(0.01)  # another session: allowed
        assert bobs.join(timeout=5).done
    with lab.as_session(alice):
        first.stop()
        mine.stop()
        first.join(timeout=5)
        mine.join(timeout=5)
        again = lab.tasks["only_one"].delay(0.01)  # the lock went with the task
        assert again.join(timeout=5).done
        assert lab.tasks["only_one"](0.01) == "timeout"


def test_data_store_and_retrieve(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["progress"].delay()
        for _ in range(100):
            if task.retrieve().data.get("step") == 1:
                break
            task.join(timeout=0.02, error_on_timeout=False)
        assert task.data == {"step": 1}
        with pytest.raises(ValueError):
            task.store()
        with pytest.raises(ValueError):
            task.data = {}
        assert task.join(timeout=5).data == {"step": 2}


def test_delay_without_session(lab) -> None:
    with lab.app.app_context():
        task = lab.tasks["whoami"].run_sync(timeout=5)
        assert task.done and task.result["username"] is None and task.session_id is None
        assert lab.weblab.get_task(task.task_id) == task


def test_reading_stopping_in_a_tight_loop_costs_no_round_trips(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["until_stopped"].delay(10)
        for _ in range(200):
            if lab.runs(task.task_id):
                break
            task.join(timeout=0.01, error_on_timeout=False)
        before = int(lab.redis.info("stats")["total_commands_processed"])
        task.join(timeout=0.3, error_on_timeout=False)  # the task reads the flag ~300 times
        during = int(lab.redis.info("stats")["total_commands_processed"]) - before
        task.stop()
        task.join(timeout=2)
        reads = int(task.result.split()[2])
        assert reads > 100
        assert during < 40, f"{during} Redis commands while the task read the flag {reads} times"


def test_pool_tasks_run_only_on_workers_of_that_pool(lab) -> None:
    from labruntime.tasks.worker import WorkerGroup

    with lab.as_session(lab.start_session()):
        task = lab.tasks["on_device"].delay()
        assert not task.join(timeout=0.3, error_on_timeout=False).finished  # default pool only
        group = WorkerGroup(lab.state.tasks, 1, pools=("device:sim",)).start()
        try:
            assert task.join(timeout=5).result == "ran on the device's worker"
        finally:
            group.stop(5)


def test_an_id_stranded_by_a_lost_reply_goes_back_to_its_queue(lab) -> None:
    with lab.as_session(lab.start_session()):
        task = lab.tasks["on_device"].delay()  # nobody serves this pool here
        store = lab.state.tasks.store
        (group,) = lab.state.workers
        # what a BLMOVE whose reply was lost leaves behind: the id in our processing list
        assert store.take("device:sim", group.worker_id, 0) == task.task_id
        assert store.queue_length("device:sim") == 0
        deadline = time.monotonic() + 5
        while store.queue_length("device:sim") == 0:
            assert time.monotonic() < deadline, "the stranded id was not requeued"
            time.sleep(0.05)
        assert store.processing_ids(group.worker_id) == []
        assert task.retrieve().submitted
