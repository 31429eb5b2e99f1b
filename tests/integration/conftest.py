"""Fixtures of the integration tests: a lab with devices (tests/integration/devlab.py), in this
process or served by worker subprocesses, with simulated boards and an image to program."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from labruntime.state import LabState, get_state
from labruntime.testing import FakeRLMS
from tests._helpers import load_module, wait_for

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _firmware() -> ModuleType:
    """hil_tests/firmware.py (the blink program and test images), loaded by path."""
    return load_module(ROOT / "hil_tests" / "firmware.py", "labruntime_hil_firmware")


BOARD = "sim:arduino?baud=115200&part=atmega328p"
LED = "gpio:17?safe=0&factory=mock"
LABRUNTIME = str(Path(sys.executable).parent / "labruntime")


def load_devlab() -> ModuleType:
    return load_module(HERE / "devlab.py", "labruntime_tests_devlab")


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Device lease files of this test apart from every other test's."""
    folder = tmp_path / "locks"
    folder.mkdir()
    monkeypatch.setenv("LABRUNTIME_LOCK_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def hex_30k() -> str:
    """A 30 KB image as Intel HEX text (what a student uploads)."""
    firmware = _firmware()
    return firmware.to_intel_hex(firmware.test_image(30 * 1024))


@pytest.fixture(scope="session")
def hex_small() -> str:
    firmware = _firmware()
    return firmware.to_intel_hex(firmware.test_image(2 * 1024))


class DevLab:
    """The device lab in this process: app, weblab, tasks, a fake RLMS, a Redis client."""

    def __init__(self, redis_url: str, redis_base: str, **kw: Any) -> None:
        self.app, self.weblab, self.tasks = load_devlab().create_app(redis_url, redis_base, **kw)
        self.rlms = FakeRLMS.for_app(self.app, max_dispose_wait=60)
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.base = redis_base

    def start_session(self, assigned_time: float = 300) -> str:
        return self.rlms.start(username="alice", assigned_time=assigned_time).session_id

    def as_session(self, session_id: str | None) -> Any:
        ctx = self.app.test_request_context("/lab")
        ctx.push()
        from flask import session

        if session_id:
            session["weblab_session_id"] = session_id
        return ctx

    def delay(self, session_id: str | None, name: str, *args: Any) -> Any:
        ctx = self.as_session(session_id)
        try:
            return self.tasks[name].delay(*args)
        finally:
            ctx.pop()

    @property
    def state(self) -> LabState:
        return get_state(self.app)

    def last_safe(self, name: str) -> dict[str, Any] | None:
        return self.state.devices.store.last_safe(name)

    def holder(self, name: str) -> dict[str, Any] | None:
        return self.state.devices.store.holder(name)

    def start(self) -> DevLab:
        self.state.start_task_threads()
        return self

    def close(self) -> None:
        self.weblab.shutdown(self.app, timeout=5)
        self.redis.close()


@pytest.fixture
def devlab_factory(redis_url: str, redis_base: str) -> Iterator[Any]:
    labs: list[DevLab] = []

    def factory(start: bool = True, **kw: Any) -> DevLab:
        kw.setdefault("devices", {"board": BOARD, "led": LED})
        kw.setdefault("threads", 2)
        lab = DevLab(redis_url, redis_base, **kw)
        labs.append(lab)
        return lab.start() if start else lab

    try:
        yield factory
    finally:
        for lab in labs:
            lab.close()


class Worker:
    """A ``labruntime --app devlab.py loop --device ...`` subprocess."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [LABRUNTIME, "--app", str(HERE / "devlab.py"), *args],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float = 20) -> None:
        """Until the worker says ``text``; fails at once if it exits first."""

        def said() -> bool:
            if text in self.output():
                return True
            assert self.proc.poll() is None, f"worker never said {text!r}:\n{self.output()}"
            return False

        wait_for(said, timeout, lambda: f"the worker to say {text!r}:\n{self.output()}")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.terminate(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self._out.close()


@pytest.fixture
def worker_factory(redis_url: str, redis_base: str, tmp_path: Path) -> Iterator[Any]:
    workers: list[Worker] = []

    def factory(*args: str, devices: dict[str, str] | None = None, **env_extra: str) -> Worker:
        env = {
            **os.environ,
            "LAB_REDIS_URL": redis_url,
            "LAB_REDIS_BASE": redis_base,
            "LAB_THREADS": "0",
            "LAB_DEVICES": json.dumps(devices or {"board": BOARD, "led": LED}),
            **env_extra,
        }
        worker = Worker(list(args), env, tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        return worker

    try:
        yield factory
    finally:
        for worker in workers:
            worker.close()
