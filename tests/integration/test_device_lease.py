"""The holder's Redis lease: a lapsed lease (the process stalled) is taken again; a lease
another holder took stops the tasks here and tells the worker (which then exits)."""

from __future__ import annotations

import json
import time


def _holder(lab):
    return lab.state.devices.holder


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_lapsed_lease_is_taken_again_with_a_new_token(devlab_factory):
    lab = devlab_factory()
    holder = _holder(lab)
    before = lab.holder("led")
    assert before["worker"] == holder.worker_id
    lab.redis.delete(f"{lab.base}:device:led")  # as if this process stalled past LEASE
    assert _wait(lambda: lab.holder("led") is not None), "the lease was not taken again"
    after = lab.holder("led")
    assert after["worker"] == holder.worker_id and after["token"] > before["token"]
    assert "led" not in holder.lost
    sid = lab.start_session()
    assert lab.delay(sid, "light").join(timeout=10).result is True


def test_a_lease_another_holder_took_is_lost_here_and_reported(devlab_factory):
    lab = devlab_factory()
    holder = _holder(lab)
    reported: list[list[str]] = []
    holder.on_lost = reported.append
    other = {"worker": "elsewhere:1:x", "token": 99, "host": "elsewhere", "pid": 1, "argv": []}
    lab.redis.set(f"{lab.base}:device:led", json.dumps(other), px=5000)
    assert _wait(lambda: reported), "on_lost was not called"
    assert reported == [["led"]] and holder.lost == {"led"}
    assert lab.holder("led")["worker"] == "elsewhere:1:x"  # never taken back from its owner
