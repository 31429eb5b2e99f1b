"""``run-tasks --device``: admission closes before the last empty-queue check, so a task that
``.delay()`` admitted always runs; one refused says to start a long-running worker."""

from __future__ import annotations

import time

import pytest

from labruntime import DeviceUnavailableError


def _race(lab, sid, worker) -> tuple[list, list[str]]:
    """``.delay()`` as fast as it goes for the whole life of the worker, its end too."""
    admitted, refused = [], []
    deadline = time.monotonic() + 60
    while worker.proc.poll() is None:
        assert time.monotonic() < deadline, worker.output()
        try:
            admitted.append(lab.delay(sid, "light"))
        except DeviceUnavailableError as error:
            refused.append(str(error))
    return admitted, refused


@pytest.mark.slow
def test_no_admitted_task_is_left_without_a_runner(devlab_factory, worker_factory):
    lab = devlab_factory(threads=0, start=False)
    sid = lab.start_session()
    total = 0
    for run in range(10):  # the window is short: race it until tasks were admitted in it
        worker = worker_factory("run-tasks", "--device", "led")
        admitted, refused = _race(lab, sid, worker)
        assert worker.proc.wait() == 0, worker.output()
        left = [t.task_id for t in admitted if t.retrieve().status != "done"]
        assert not left, f"run {run}: {len(left)} of {len(admitted)} admitted task(s) never ran"
        assert "loop --device led" in refused[-1], refused[-1]  # refused after it closed
        total += len(admitted)
        if total >= 3:
            break
    assert total >= 3, f"only {total} task(s) admitted in 10 runs: the race was not run"
    with pytest.raises(DeviceUnavailableError):
        lab.delay(sid, "light")  # after the worker is gone
