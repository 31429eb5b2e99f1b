"""The Device base: safe() reports instead of raising, bounded waits, close order, leases."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from labruntime.drivers import (
    Device,
    DeviceBusyError,
    DeviceClosedError,
    DeviceIOError,
    DeviceLease,
)
from labruntime.drivers.base import open_with_lease


class Valve(Device):
    """A test driver recording what the base class asks of it."""

    scheme = "valve"

    def __init__(self, *, fail_safe: bool = False, fail_close: bool = False, **kw: Any) -> None:
        super().__init__("valve:test", **kw)
        self.calls: list[str] = []
        self.fail_safe = fail_safe
        self.fail_close = fail_close

    def _drive_safe(self) -> dict[str, Any]:
        self.calls.append("safe")
        if self.fail_safe:
            raise DeviceIOError("valve stuck open")
        return {"valve": "closed"}

    def _close(self) -> None:
        self.calls.append("close")
        if self.fail_close:
            raise DeviceIOError("bus gone")

    def _describe(self) -> dict[str, Any]:
        return {"valve": "present"}


def test_safe_failure_is_reported_not_raised() -> None:
    valve = Valve(fail_safe=True)
    report = valve.safe()
    assert report.ok is False and report.state == {}
    assert "valve stuck open" in report.detail
    assert valve.describe()["safe"]["ok"] is False
    valve.close()
    assert valve.calls == ["safe", "safe", "close"]


def test_safe_waits_a_bounded_time_for_an_operation_that_ignores_cancel() -> None:
    valve = Valve()
    release = threading.Event()
    started = threading.Event()

    def stubborn() -> None:
        with valve.ops.operation("flush"):
            started.set()
            release.wait(10)  # never reaches a safe point

    thread = threading.Thread(target=stubborn)
    thread.start()
    started.wait(5)
    info = valve.describe()
    assert info["busy"] is True and info["operations"][0]["name"] == "flush"
    t0 = time.monotonic()
    report = valve.safe(wait=0.1)
    assert 0.09 <= time.monotonic() - t0 < 2
    assert report.ok is False
    assert "still running after 0.1 s: flush" in report.detail
    assert report.state == {"valve": "closed"}  # driven anyway
    release.set()
    thread.join(5)
    assert valve.safe().ok
    valve.close()


def test_close_drives_safe_then_closes_then_releases_the_lease() -> None:
    lease = DeviceLease.acquire("valve:test")
    valve = Valve(lease=lease)
    with valve:
        assert json.loads(json.dumps(valve.describe()))["valve"] == "present"
    assert valve.calls == ["safe", "close"] and valve.closed and not lease.held
    valve.close()
    assert valve.calls == ["safe", "close"]
    with pytest.raises(DeviceClosedError, match="valve:test"):
        valve._check_open()
    assert "valve" not in valve.describe()  # no driver fields once closed


def test_close_without_safe_and_failing_close_still_release_the_lease() -> None:
    lease = DeviceLease.acquire("valve:test")
    valve = Valve(lease=lease, fail_close=True)
    with pytest.raises(DeviceIOError, match="bus gone"):
        valve.close(safe=False)
    assert valve.calls == ["close"] and valve.closed and not lease.held


def test_safe_on_a_never_safed_closed_device_raises_closed() -> None:
    valve = Valve()
    valve.close(safe=False)
    with pytest.raises(DeviceClosedError):
        valve.safe()


def test_open_with_lease_releases_on_failure_and_drives_safe() -> None:
    def broken(_lease: DeviceLease) -> Valve:
        raise DeviceIOError("no such valve")

    with pytest.raises(DeviceIOError):
        open_with_lease("valve:test", broken)
    valve = open_with_lease("valve:test", lambda lease: Valve(lease=lease))
    assert valve.calls == ["safe"] and valve.last_safe is not None and valve.last_safe.ok
    with pytest.raises(DeviceBusyError):
        open_with_lease("valve:test", lambda lease: Valve(lease=lease))
    valve.close()
    open_with_lease("valve:test", lambda lease: Valve(lease=lease)).close()
