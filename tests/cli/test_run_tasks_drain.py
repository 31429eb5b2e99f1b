"""``run-tasks --device``: admission closes before the last empty-queue check, so a task that
``.delay()`` admitted always runs; one refused says to start a long-running worker."""

from __future__ import annotations

import time

import pytest

from labruntime import DeviceUnavailableError


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_no_admitted_task_is_left_without_a_runner(devlab_factory, worker_factory, round_):
    lab = devlab_factory(threads=0, start=False)
    sid = lab.start_session()
    worker = worker_factory("run-tasks", "--device", "led")
    admitted, refused = [], []
    deadline = time.monotonic() + 60
    while worker.proc.poll() is None:  # .delay() races the whole drain window, its end too
        assert time.monotonic() < deadline, worker.output()
        try:
            admitted.append(lab.delay(sid, "light"))
        except DeviceUnavailableError as error:
            refused.append(str(error))
        time.sleep(0.002)
    assert worker.proc.wait() == 0, worker.output()
    late = []
    for _ in range(20):  # after the worker is gone, every .delay() is refused
        try:
            late.append(lab.delay(sid, "light"))
        except DeviceUnavailableError as error:
            refused.append(str(error))
    assert not late
    assert admitted, worker.output()
    left = [t.task_id for t in admitted if t.retrieve().status != "done"]
    assert not left, f"{len(left)} of {len(admitted)} admitted task(s) never ran:\n{worker.output()}"
    assert "loop --device led" in refused[-1]
