"""Benchmark: devices meet tasks, on a simulated Arduino at 115200 baud with a 30 KB image.

1. Overhead of programming as a task (``program_device.delay(hex).join()``, runner thread in
   the process holding the board, progress written to Redis) against calling the driver
   directly (``open_device(url).program(image)``) on the same simulated board. Target < 5 %.
2. Dispose of a session whose task is programming: from the RLMS's dispose call to "safe
   state confirmed" (the holder's SafeReport), in one process and with a device worker
   process (the web process asks it through Redis). Target < 1 s after the operation's next
   safe point (one page: ~25 ms at 115200 baud).

    .venv/bin/python bench/bench_devices.py [--runs 3] [--size 30720]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask

from labruntime import WebLab, current_devices
from labruntime.drivers import open_device
from labruntime.drivers.image import FirmwareImage
from labruntime.drivers.sim.arduino import SimulatedArduino
from labruntime.state import get_state
from labruntime.store.embedded import EmbeddedRedis
from labruntime.testing import FakeRLMS

ROOT = Path(__file__).resolve().parents[1]


def firmware() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hil_firmware", ROOT / "hil_tests/firmware.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_lab(redis_url: str, url: str) -> tuple[Flask, WebLab, Any]:
    app = Flask("bench_devices")
    app.config.update(
        SECRET_KEY="bench-secret-key-16",
        WEBLAB_USERNAME="rlms",
        WEBLAB_PASSWORD="bench-rlms-password",
        WEBLAB_REDIS_URL=redis_url,
        WEBLAB_REDIS_BASE="benchdev",
        WEBLAB_TASK_THREADS_PROCESS=1,
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_DEVICES={"board": url},
    )
    weblab = WebLab(app)

    @weblab.task(device="board")
    def program_device(hex_text: str) -> dict[str, Any]:
        return current_devices["board"].program(hex_text.encode("ascii")).to_dict()

    return app, weblab, program_device


def last_safe(app: Flask, name: str) -> dict[str, Any]:
    return get_state(app).devices.store.last_safe(name) or {}


def wait_fraction(task: Any, fraction: float) -> None:
    deadline = time.monotonic() + 30
    while ((task.retrieve().progress or {}).get("fraction") or 0) < fraction:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no progress: {task.status} {task.error}")
        time.sleep(0.01)


def overhead_and_dispose(redis_url: str, size: int, runs: int) -> None:
    fw = firmware()
    data = fw.test_image(size)
    hex_text = fw.to_intel_hex(data)
    with SimulatedArduino(baudrate=115200) as board:
        url = f"stk500:{board.start()}?baudrate=115200&reset=none"
        direct = []
        for _ in range(runs):
            with open_device(url, name="board") as dev:
                started = time.perf_counter()
                dev.program(FirmwareImage(data, 0, "bench"))
                direct.append(time.perf_counter() - started)
        app, weblab, program_device = make_lab(redis_url, url)
        get_state(app).start_task_threads()
        try:
            as_task = []
            with app.test_request_context("/"):
                for _ in range(runs):
                    started = time.perf_counter()
                    task = program_device.delay(hex_text).join(timeout=120)
                    as_task.append(time.perf_counter() - started)
                    assert task.done, task.error
            d, t = statistics.median(direct), statistics.median(as_task)
            print(f"program {size} B at 115200 baud, median of {runs}:")
            print(f"  driver called directly      {d:7.3f} s   (runs: {fmt(direct)})")
            print(f"  program_device as a task    {t:7.3f} s   (runs: {fmt(as_task)})")
            print(f"  overhead                    {100 * (t - d) / d:+7.2f} %   (target < 5 %)")
            dispose_in(app, program_device, hex_text, "one process (runner thread holds it)")
        finally:
            weblab.shutdown(app, timeout=10)


def dispose_in(app: Flask, task_func: Any, hex_text: str, label: str) -> None:
    rlms = FakeRLMS.for_app(app, max_dispose_wait=60)
    sid = rlms.start(username="bench", assigned_time=300).session_id
    ctx = app.test_request_context("/")
    ctx.push()
    try:
        from flask import session

        session["weblab_session_id"] = sid
        task = task_func.delay(hex_text)
    finally:
        ctx.pop()
    wait_fraction(task, 0.2)
    report_dispose(label, lambda: rlms.dispose(sid), lambda: last_safe(app, "board"))


def report_dispose(label: str, dispose: Any, safe: Any) -> None:
    started = time.time()
    dispose()
    returned = time.time() - started
    report = safe()
    confirmed = report.get("at", float("nan")) - started
    print(f"dispose while programming, {label}:")
    print(f"  dispose call -> safe state confirmed  {confirmed:6.3f} s  (ok={report.get('ok')})")
    print(f"  dispose call returned after           {returned:6.3f} s")


def dispose_with_worker(size: int, workdir: Path) -> None:
    from labruntime.pytest_plugin.hil_lab import HilLab

    fw = firmware()
    hex_text = fw.to_intel_hex(fw.test_image(size))
    lab = HilLab({"board": "sim:arduino?baud=115200", "led": "gpio:17?factory=mock"}, workdir)
    try:
        lab.start_worker()
        student = lab.student()
        task_id = student.run("program_device", hex_text)
        while ((student.task(task_id)["progress"] or {}).get("fraction") or 0) < 0.2:
            time.sleep(0.01)
        report_dispose(
            "device worker process (asked through Redis)",
            lambda: lab.rlms.dispose(student.session_id),
            lambda: lab.last_safe("board") or {},
        )
    finally:
        problems = lab.close()
        if problems:
            print("  problems:", problems)


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=30 * 1024)
    args = parser.parse_args()
    # the cancelled task logs its OperationCancelled traceback: expected here, keep it quiet
    logging.getLogger("labruntime.tasks.runner").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("LABRUNTIME_LOCK_DIR", str(Path(tmp) / "locks"))
        server = EmbeddedRedis(Path(tmp) / "redis")
        try:
            overhead_and_dispose(server.ensure_running(), args.size, args.runs)
        finally:
            server.stop()
        dispose_with_worker(args.size, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
