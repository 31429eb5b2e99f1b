"""The running lab of the HIL suites (the ``hil_lab`` fixture of :mod:`.hil`).

A small lab on the HIL device map's ``board`` and ``led``, served over real HTTP on a free
port, with its own throwaway Redis, a FakeRLMS, and a device worker *process*
(``labruntime --app ... loop --device board --device led``) that holds the devices, exactly as
on a Raspberry Pi deployment. A simulated board (``sim:arduino``) is started by the harness and
reached as ``stk500:<its tty>``, so it outlives worker processes like a real board does.

Student actions go over HTTP with a cookie jar (:class:`Student`): open the RLMS link, upload
a hex, read the task's progress, light the LED.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from labruntime import WebLab, current_devices, require_time, requires_active
from labruntime.state import get_state
from labruntime.testing import FakeRLMS, serve_app

log = logging.getLogger(__name__)

__all__ = ["HilLab", "Student", "create_app", "env_app"]

ENV = "LABRUNTIME_HIL_LAB"  # JSON {redis_url, redis_base, devices} for worker processes
APP_FILE = "from labruntime.pytest_plugin.hil_lab import env_app\n\napp = env_app()\n"


def create_app(redis_url: str, redis_base: str, devices: dict[str, str]) -> Flask:
    """The HIL lab: tasks program_device (board) and light (led); JSON views for a student."""
    app = Flask("labruntime_hil_lab")
    app.config.update(
        SECRET_KEY="hil-secret-of-the-hil-lab",
        WEBLAB_USERNAME="rlms",
        WEBLAB_PASSWORD="hil-password-of-the-rlms",
        WEBLAB_REDIS_URL=redis_url,
        WEBLAB_REDIS_BASE=redis_base,
        WEBLAB_NO_THREAD=True,  # the web process never holds the devices: the worker does
        WEBLAB_DISPOSE_TIMEOUT=20,
        WEBLAB_DEVICES=devices,
    )
    lab = WebLab(app)

    @lab.initial_url
    def initial_url() -> str:
        return "/lab"

    @lab.task(device="board")
    def program_device(hex_text: str) -> dict[str, Any]:
        board = current_devices["board"]
        image = hex_text.encode("ascii")
        require_time(board.estimate_seconds(image), margin=1.0, what="programming")
        return board.program(image).to_dict()

    @lab.task(device="led")
    def light(on: bool) -> bool:
        led = current_devices["led"]
        led.value = on
        return bool(led.value)

    tasks = {"program_device": program_device, "light": light}

    @app.route("/lab")
    @requires_active
    def lab_page() -> Any:
        return jsonify(ok=True)

    @app.route("/lab/run/<name>", methods=["POST"])
    @requires_active
    def run(name: str) -> Any:
        task = tasks[name].delay(*request.get_json()["args"])
        return jsonify(task_id=task.task_id)

    @app.route("/lab/tasks/<task_id>")
    @requires_active
    def task_view(task_id: str) -> Any:
        task = lab.get_task(task_id)
        if task is None:
            return jsonify(error="no such task"), 404
        return jsonify(
            status=task.status, progress=task.progress, result=task.result, error=task.error
        )

    return app


def env_app() -> Flask:
    """The lab from the environment (what the worker process loads)."""
    settings = json.loads(os.environ[ENV])
    return create_app(settings["redis_url"], settings["redis_base"], settings["devices"])


class Student:
    """A student's browser: a cookie jar and the lab's JSON views."""

    def __init__(self, base_url: str, session_id: str, link: str) -> None:
        self.base_url, self.session_id = base_url, session_id
        jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with self._opener.open(link, timeout=30) as reply:  # the RLMS link -> /lab
            assert json.loads(reply.read())["ok"]

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base_url + path, data=data)
        req.add_header("Content-Type", "application/json")
        with self._opener.open(req, timeout=30) as reply:
            return json.loads(reply.read())

    def run(self, name: str, *args: Any) -> str:
        return self._call(f"/lab/run/{name}", {"args": list(args)})["task_id"]

    def task(self, task_id: str) -> dict[str, Any]:
        return self._call(f"/lab/tasks/{task_id}")

    def wait(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        """Poll the task view (as a page would) until the task ends; returns its last view."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.task(task_id)
            if view["status"] in ("done", "failed") or time.monotonic() > deadline:
                return view
            time.sleep(0.1)


class HilLab:
    """The harness: Redis, the app over HTTP, the worker process, a FakeRLMS. ``close()``."""

    def __init__(self, devices: dict[str, str], workdir: Path) -> None:
        from labruntime.drivers import parse_device_url
        from labruntime.store.embedded import EmbeddedRedis

        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self._redis = EmbeddedRedis(workdir / "redis")
        self._stack.callback(self._redis.stop)
        self.redis_url = self._redis.ensure_running()
        self.devices: dict[str, str] = {n: devices[n] for n in ("board", "led") if n in devices}
        board = self.devices.get("board")
        if board and (parse_device_url(board).scheme, parse_device_url(board).target) == (
            "sim",
            "arduino",
        ):
            from labruntime.drivers.sim.arduino import SimulatedArduino

            sim = self._stack.enter_context(SimulatedArduino(baudrate=115200))
            self.devices["board"] = f"stk500:{sim.start()}?baudrate=115200&reset=none"
        self.base = "hil"
        self.app = create_app(self.redis_url, self.base, self.devices)
        self.base_url = self._stack.enter_context(serve_app(self.app))
        self.rlms = FakeRLMS(self.base_url, "rlms", "hil-password-of-the-rlms", max_dispose_wait=60)
        self._app_file = workdir / "hil_lab_app.py"
        self._app_file.write_text(APP_FILE)
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = workdir / "worker.log"

    # -- the device worker -----------------------------------------------------------------
    def start_worker(self, timeout: float = 30) -> subprocess.Popen[bytes]:
        env = {**os.environ, ENV: json.dumps(self._settings())}
        args = [str(Path(sys.executable).parent / "labruntime"), "--app", str(self._app_file)]
        args += ["loop", "--threads", "2"]
        for name in self.devices:
            args += ["--device", name]
        start = len(self.log())
        with self.worker_log.open("a") as out:
            self.worker = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while "SIGTERM to stop" not in self.log()[start:]:
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the device worker did not start:\n{self.log()}")
            time.sleep(0.05)
        return self.worker

    def _settings(self) -> dict[str, Any]:
        return {"redis_url": self.redis_url, "redis_base": self.base, "devices": self.devices}

    def log(self) -> str:
        return self.worker_log.read_text() if self.worker_log.exists() else ""

    def stop_worker(self, timeout: float = 60) -> int | None:
        """SIGTERM (the graceful path: stop tasks, safe, release); its exit code."""
        if self.worker is None:
            return None
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
        try:
            return self.worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_worker()
            return None

    def kill_worker(self) -> None:
        """kill -9: the worker gets no chance to clean up."""
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
        if self.worker is not None:
            self.worker.wait(timeout=10)

    # -- students and state ----------------------------------------------------------------
    def student(self, assigned_time: float = 300, username: str = "student") -> Student:
        started = self.rlms.start(username=username, assigned_time=assigned_time)
        return Student(self.base_url, started.session_id, started.url)

    def last_safe(self, name: str) -> dict[str, Any] | None:
        """The last SafeReport of a device (written by its holder), or None."""
        return get_state(self.app).devices.store.last_safe(name)

    def holder(self, name: str) -> dict[str, Any] | None:
        """The live holder of a device (its lease), or None."""
        return get_state(self.app).devices.store.holder(name)

    def close(self) -> list[str]:
        """Stop the worker (SIGTERM), check every device reported safe; returns problems."""
        problems = []
        try:
            code = self.stop_worker()
            if code not in (0, None):
                problems.append(f"the worker exited {code}:\n{self.log()[-2000:]}")
            for name in self.devices:
                report = self.last_safe(name)
                if report is None or not report.get("ok"):
                    problems.append(f"device {name} not safe at the end: {report}")
        finally:
            get_state(self.app).connection.close()
            self._stack.close()
        return problems
