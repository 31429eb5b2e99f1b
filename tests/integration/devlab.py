"""A lab with devices for the integration tests (also run by worker subprocesses:
``labruntime --app devlab.py loop --device board``).

Environment: LAB_REDIS_URL, LAB_REDIS_BASE, LAB_THREADS (runner threads in the web process,
default 0), LAB_DEVICES (JSON name -> URL), LAB_DISPOSE_TIMEOUT.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flask import Flask

from labruntime import WebLab, current_devices, current_task_stopping, require_time


def create_app(
    redis_url: str | None = None,
    redis_base: str | None = None,
    threads: int | None = None,
    devices: dict[str, str] | None = None,
    dispose_timeout: float | None = None,
) -> tuple[Flask, WebLab, dict[str, Any]]:
    if threads is None:
        threads = int(os.environ.get("LAB_THREADS", "0"))
    if devices is None:
        devices = json.loads(os.environ.get("LAB_DEVICES", "{}"))
    if dispose_timeout is None:
        dispose_timeout = float(os.environ.get("LAB_DISPOSE_TIMEOUT", "60"))
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test-secret-of-devlab",
        WEBLAB_USERNAME="rlms",
        WEBLAB_PASSWORD="secret-rlms-password",
        WEBLAB_REDIS_URL=redis_url or os.environ["LAB_REDIS_URL"],
        WEBLAB_REDIS_BASE=redis_base or os.environ["LAB_REDIS_BASE"],
        WEBLAB_TASK_THREADS_PROCESS=threads,
        WEBLAB_NO_THREAD=threads == 0,
        WEBLAB_AUTOCLEAN_THREAD=threads > 0,
        WEBLAB_DISPOSE_TIMEOUT=dispose_timeout,
        WEBLAB_DEVICES=devices,
    )
    weblab = WebLab(app)
    tasks: dict[str, Any] = {}

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab"

    @weblab.task(device="board")
    def program_device(hex_text: str, verify: bool = True) -> dict[str, Any]:
        board = current_devices["board"]
        image = hex_text.encode("ascii")
        require_time(board.estimate_seconds(image), margin=1.0, what="programming")
        return board.program(image, verify=verify).to_dict()

    @weblab.task(device="board")
    def program_as_readme(hex_text: str) -> dict[str, Any]:
        # exactly the README's device task: the student's text goes straight in
        board = current_devices["board"]
        require_time(board.estimate_seconds(hex_text), margin=2)
        return board.program(hex_text).to_dict()

    @weblab.task(devices=["board", "led"])
    def program_and_light(hex_text: str) -> dict[str, Any]:
        result = current_devices["board"].program(hex_text.encode("ascii"))
        current_devices["led"].on()
        return result.to_dict()

    @weblab.task(device="led")
    def light() -> bool:
        current_devices["led"].on()
        return bool(current_devices["led"].value)

    @weblab.task(device="led")
    def ask_for_board() -> str:
        return current_devices["board"].url

    @weblab.task(device="led")
    def stubborn(seconds: float) -> str:
        current_devices["led"].on()
        time.sleep(seconds)  # never reads current_task_stopping
        return "slept"

    @weblab.task(device="led")
    def polite(seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if current_task_stopping:
                return "stopped"
            time.sleep(0.01)
        return "timeout"

    tasks.update(
        program_device=program_device,
        program_as_readme=program_as_readme,
        program_and_light=program_and_light,
        light=light,
        ask_for_board=ask_for_board,
        stubborn=stubborn,
        polite=polite,
    )

    @app.route("/lab")
    def lab() -> str:
        return "lab"

    return app, weblab, tasks


if os.environ.get("LAB_REDIS_URL"):
    app, weblab, tasks = create_app()
