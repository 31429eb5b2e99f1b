"""A device worker stalled mid-programming (SIGSTOP) past its lease while its session is
disposed: when it resumes and retakes the lapsed lease, it drives the board safe first."""

from __future__ import annotations

import os
import signal

import pytest

from tests._helpers import wait_for

LEASE = 5.0  # labruntime.devices.holder.LEASE


def _progress_done(task) -> bool:
    return bool((task.retrieve().progress or {}).get("done"))


@pytest.mark.slow
def test_a_stalled_holder_that_retakes_its_lapsed_lease_drives_the_board_safe_first(
    devlab_factory, worker_factory, hex_30k
):
    lab = devlab_factory(threads=0, start=False)
    worker = worker_factory("loop", "--device", "board")
    worker.wait_for("holding device(s) board")
    token = lab.holder("board")["token"]
    sid = lab.start_session()
    task = lab.delay(sid, "program_device", hex_30k)
    wait_for(lambda: _progress_done(task), 30, "the programming to start")
    os.kill(worker.proc.pid, signal.SIGSTOP)  # stalled mid-programming
    try:
        wait_for(lambda: lab.holder("board") is None, LEASE + 5, "the device lease to lapse")
        lab.redis.delete(f"{lab.base}:device:board:safe")
        lab.rlms.dispose(sid)  # finds no holder for the board: cannot drive it safe now
        assert lab.last_safe("board") is None
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    report = wait_for(lambda: lab.last_safe("board"), 15, lambda: worker.output())
    # driven safe under the retaken lease, the programming in flight cancelled first (the
    # board's bootloader timed out during the 10 s stall, so the report may say it could
    # not leave programming mode: it is the report of an attempt, as on a real board)
    assert report["token"] == token + 1, report
    assert "cancelled 1 operation" in report["detail"], report
    assert lab.holder("board")["token"] == token + 1
    worker.wait_for("safe state driven after its lease lapsed")
    final = task.retrieve()
    assert final.failed, final.status  # never a result for an ended session
    assert worker.proc.poll() is None
