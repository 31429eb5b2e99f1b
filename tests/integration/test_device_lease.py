"""The holder's Redis lease: a lapsed lease (the process stalled) is taken again; a lease
another holder took stops the tasks here and tells the worker (which then exits)."""

from __future__ import annotations

import json

from tests._helpers import wait_for


def _holder(lab):
    return lab.state.devices.holder


def test_a_lapsed_lease_is_taken_again_with_a_new_token(devlab_factory):
    lab = devlab_factory()
    holder = _holder(lab)
    before = lab.holder("led")
    assert before["worker"] == holder.worker_id
    lab.redis.delete(f"{lab.base}:device:led")  # as if this process stalled past LEASE
    wait_for(lambda: lab.holder("led") is not None, 5, "the lease to be taken again")
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
    wait_for(lambda: reported, 5, "on_lost to be called")
    assert reported == [["led"]] and holder.lost == {"led"}
    assert lab.holder("led")["worker"] == "elsewhere:1:x"  # never taken back from its owner
