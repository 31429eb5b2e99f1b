"""Operations: progress, cancel at safe points, critical sections, deadlines, wait_idle."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from labruntime.drivers import (
    DeviceTimeoutError,
    OperationCancelled,
    OperationTracker,
    Progress,
)


def test_progress_fraction_and_callback() -> None:
    assert Progress("write", 3, 4).fraction == 0.75
    assert Progress("write", 0, 0).fraction == 1.0
    assert Progress("write", 9, 4).fraction == 1.0
    events: list[Progress] = []
    tracker = OperationTracker()
    with tracker.operation("program", progress=events.append) as op:
        for done in range(3):
            op.report("write", done, 2)
    assert events == [Progress("write", 0, 2), Progress("write", 1, 2), Progress("write", 2, 2)]
    assert op.last_progress == Progress("write", 2, 2)


def test_a_failing_progress_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_event: Progress) -> None:
        raise RuntimeError("callback exploded")

    tracker = OperationTracker()
    with caplog.at_level(logging.ERROR), tracker.operation("program", progress=boom) as op:
        op.report("write", 1, 2)
        op.check()
    assert "callback exploded" in caplog.text


def test_cancel_is_raised_at_the_next_safe_point_from_another_thread() -> None:
    tracker = OperationTracker()
    reached = threading.Event()
    outcome: list[BaseException] = []
    blocks_done: list[int] = []

    def work() -> None:
        try:
            with tracker.operation("long") as op:
                for block in range(1000):
                    op.check()
                    blocks_done.append(block)
                    reached.set()
                    op.wait_cancelled(0.01)  # a block of work that ends early on cancel
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    assert reached.wait(5)
    assert tracker.cancel_all("test says stop") == 1
    assert tracker.wait_idle(5)
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], OperationCancelled)
    assert "test says stop" in str(outcome[0])
    assert len(blocks_done) < 1000
    assert tracker.in_flight == []


def test_critical_section_defers_cancel_to_the_next_check() -> None:
    tracker = OperationTracker()
    steps: list[str] = []
    with pytest.raises(OperationCancelled):
        with tracker.operation("write") as op:
            with op.critical():
                op.cancel("mid-page")
                op.check()  # deferred inside the critical section
                steps.append("finished the page")
            assert op.cancelled
            steps.append("left the critical section")
            op.check()
            steps.append("never")
    assert steps == ["finished the page", "left the critical section"]


def test_deadline_raises_timeout_error_at_a_safe_point() -> None:
    tracker = OperationTracker()
    with tracker.operation("slow", timeout=0.05) as op:
        assert op.deadline is not None and 0 < op.remaining() <= 0.05
        op.check()
        time.sleep(0.06)
        assert op.remaining() == 0.0
        with pytest.raises(DeviceTimeoutError, match="deadline of 0.05 s") as info:
            op.check()
    assert isinstance(info.value, TimeoutError)


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        with OperationTracker().operation("x", timeout=0):
            pass


def test_external_cancel_sources_event_and_callable() -> None:
    tracker = OperationTracker()
    event = threading.Event()
    with tracker.operation("a", cancel=event) as op:
        op.check()
        event.set()
        with pytest.raises(OperationCancelled, match="cancel requested by caller"):
            op.check()
    flag = {"stop": False}
    with tracker.operation("b", cancel=lambda: flag["stop"]) as op:
        op.check()
        flag["stop"] = True
        assert op.cancelled


def test_on_cancel_callbacks_run_once_and_immediately_if_already_cancelled() -> None:
    tracker = OperationTracker()
    calls: list[str] = []
    with tracker.operation("tool") as op:
        op.on_cancel(calls.append)
        op.cancel("first")
        op.cancel("second")
        op.on_cancel(lambda reason: calls.append("late:" + reason))
    assert calls == ["first", "late:first"]
    assert op.cancel_reason == "first"


def test_wait_idle_blocks_until_every_operation_ends() -> None:
    tracker = OperationTracker()
    assert tracker.wait_idle(0) is True
    release = threading.Event()
    started = threading.Barrier(3)

    def work(name: str) -> None:
        with tracker.operation(name):
            started.wait(5)
            release.wait(5)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("one", "two")]
    for thread in threads:
        thread.start()
    started.wait(5)
    assert sorted(op.name for op in tracker.in_flight) == ["one", "two"]
    assert tracker.busy
    t0 = time.monotonic()
    assert tracker.wait_idle(0.1) is False
    assert time.monotonic() - t0 >= 0.09
    release.set()
    assert tracker.wait_idle(5) is True
    for thread in threads:
        thread.join(5)
    assert not tracker.busy


def test_to_dict_is_json_able() -> None:
    import json

    tracker = OperationTracker()
    with tracker.operation("program") as op:
        op.report("write", 5, 10)
        data = json.loads(json.dumps(op.to_dict()))
    assert data["name"] == "program"
    assert data["progress"] == {"stage": "write", "done": 5, "total": 10}
    assert data["cancelled"] is False
