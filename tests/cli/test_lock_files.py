"""Lock files are not left for every port ever tried: the lease file of a device node that is
gone, released cleanly, is removed by the next acquirer; a live or unclean one stays."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labruntime.drivers import open_device
from labruntime.drivers.lease import DeviceLease


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "locks"
    monkeypatch.setenv("LABRUNTIME_LOCK_DIR", str(folder))
    return folder


def test_ports_tried_leave_no_lock_file_each(locks: Path, tmp_path: Path):
    for n in range(5):  # five ports tried, each gone afterwards (a simulator's, a USB one)
        port = tmp_path / f"ttyTRIED{n}"
        port.write_text("")
        DeviceLease.acquire(str(port)).release()
        port.unlink()
    with DeviceLease.acquire("/dev/null"):
        assert [p.name for p in locks.glob("*.lock")] == [p.name for p in locks.glob("*null*")]


def test_simulated_boards_leave_no_lock_file_each(locks: Path):
    for _ in range(3):
        with open_device("sim:arduino") as board:
            assert board.describe()["port"]
    with DeviceLease.acquire("/dev/null"):
        assert len(list(locks.glob("*.lock"))) == 1


def test_only_clean_files_of_gone_nodes_are_swept(locks: Path, tmp_path: Path):
    node = tmp_path / "ttyGONE"
    node.write_text("")
    unclean_node = tmp_path / "ttyCRASHED"
    unclean_node.write_text("")
    DeviceLease.acquire(str(node)).release()
    crashed = DeviceLease.acquire(str(unclean_node))
    crashed_file = crashed.path
    os.close(crashed._fd)  # as if its holder died: lock dropped, the file says "clean": false
    crashed._fd = None
    node.unlink()
    unclean_node.unlink()
    live = DeviceLease.acquire("/dev/null")
    try:
        names = {p.name for p in locks.glob("*.lock")}
        assert not any("ttyGONE" in n for n in names), names  # swept
        assert crashed_file.exists()  # the next holder must learn it was not released
        assert json.loads(crashed_file.read_text())["clean"] is False
    finally:
        live.release()
    assert live.path.exists()  # /dev/null is still there: its file stays
