"""The throttle between device progress and Redis: <= 10 writes a second, the last one kept."""

from __future__ import annotations

import threading
import time

from labruntime.devices.progress import ProgressWriter
from labruntime.devices.routing import device_pool, pools_for
from labruntime.drivers import Progress


def test_a_burst_is_throttled_and_the_last_event_is_written():
    written: list[dict] = []
    done = threading.Event()

    def write(value: dict) -> None:
        written.append(value)
        if value["done"] == 499:
            done.set()

    writer = ProgressWriter(write, interval=0.05)
    started = time.monotonic()
    for i in range(500):  # 500 events in ~0.25 s
        writer(Progress("write", i, 499))
        time.sleep(0.0005)
    assert done.wait(2), written[-1:]  # the last one arrives without a close()
    span = time.monotonic() - started
    assert len(written) <= span / 0.05 + 2, (len(written), span)
    assert written[-1]["fraction"] == 1.0 and written[-1]["stage"] == "write"
    assert [w["done"] for w in written] == sorted(w["done"] for w in written)
    writer.close()


def test_writes_never_overlap_and_keep_the_interval_with_a_slow_store():
    """Two operations report at once and the store is slow: one write at a time, spaced."""
    active, overlaps, stamps = [0], [0], []
    lock = threading.Lock()

    def write(value: dict) -> None:
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
            stamps.append(time.monotonic())
        time.sleep(0.03)  # a slow Redis
        with lock:
            active[0] -= 1

    writer = ProgressWriter(write, interval=0.01)

    def produce(stage: str) -> None:
        for i in range(40):
            writer(Progress(stage, i, 39))
            time.sleep(0.002)

    threads = [threading.Thread(target=produce, args=(s,)) for s in ("write", "verify")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert overlaps[0] == 1, "two progress writes ran at the same time"
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 0.01 - 0.002, gaps


def test_close_flushes_a_pending_event():
    written: list[dict] = []
    writer = ProgressWriter(written.append, interval=10)
    writer(Progress("verify", 1, 4))
    writer(Progress("verify", 2, 4))  # within the interval: pending
    writer.close()
    assert [w["done"] for w in written] == [1, 2]


def test_pools_cover_every_subset_of_the_held_devices():
    assert device_pool(["led", "board", "led"]) == "devices:board+led"
    assert pools_for(["led", "board"]) == ["devices:board", "devices:led", "devices:board+led"]
