"""The demo lab's pages and small JSON endpoints (what the page's script calls).

``GET /`` the page (or the "session over" page with the ``back`` link), ``GET /state`` what the
page shows (time left, the programming task and its progress, the LED; ``?task=ID`` follows that
task of the session, by default the last one programmed; on the twin ``?after=T`` asks for the
LED pin's edges after T simulated seconds), ``POST /program`` (an
upload or a bundled example), ``POST /cancel``, ``POST /led`` and ``POST /leave`` (logout).
Every refusal is JSON ``{"error": message}`` with a 4xx status, never a 500 page. The POST
routes are behind ``@requires_active``/``@requires_login``, which refuse them when another
site's page sends them. The RLMS's ``back`` link is shown only when it is an http(s) URL.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify, render_template, request, url_for

from labruntime import (
    WebLab,
    WebLabError,
    logout,
    requires_active,
    requires_login,
    weblab_user,
)

from .firmware import EXAMPLES, FirmwareError, example, from_upload
from .lab_tasks import LED_IN, LED_OUT, TWIN_LED, DemoTasks

__all__ = ["register_views"]

log = logging.getLogger(__name__)
LED_JOIN = 3.0  # seconds a /led request waits for its small task
PIN_JOIN = 1.0  # seconds a /state request waits to read the twin's LED pin


def _back_link() -> str | None:
    """The student's ``back`` link when it is an absolute http(s) URL (labruntime refuses a
    start with any other; checked again before it becomes a link or a redirect)."""
    back = weblab_user.back
    if not back or not back.lower().startswith(("http://", "https://")):
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in back):
        return None
    return back


def _refuse(message: str, status: int = 400) -> Any:
    return jsonify(error=message), status


def _task_state(weblab: WebLab, task_id: str | None) -> dict[str, Any] | None:
    """The programming task as the page shows it (None before the first Program)."""
    task = weblab.get_task(task_id) if task_id else None
    if task is None:
        return None
    error = task.error
    return {
        "id": task.task_id,
        "status": task.status,
        "stopping": bool(task.stopping),
        "progress": task.progress,
        "result": task.result if task.done else None,
        "error": None if error is None else dict(error),
    }


def _led_state() -> dict[str, Any]:
    data = weblab_user.data
    return {"on": data.get("led"), "switches": int(data.get("switches", 0))}


def register_views(app: Flask, weblab: WebLab, tasks: DemoTasks) -> None:
    """Add the demo's routes to ``app``."""
    twin = bool(app.config.get("DEMO_TWIN"))

    @app.route("/")
    @requires_login
    def index() -> Any:
        if not twin and weblab_user.active and weblab_user.data.get("led") is None:
            _read_led(tasks)
        examples = [(name, label) for name, (label, _) in EXAMPLES.items()]
        if twin:  # the example that shows the LED and the serial monitor comes first
            examples.sort(key=lambda item: item[0] != "blink_serial")
        return render_template(
            "demo.html",
            twin=twin,
            twin_led=TWIN_LED,
            board_note=app.config.get("DEMO_BOARD_NOTE"),
            examples=examples,
            led_out=LED_OUT,
            led_in=LED_IN,
            led=_led_state(),
            back=_back_link(),
        )

    @app.route("/state")
    @requires_login
    def state() -> Any:
        if not weblab_user.active:
            return jsonify(active=False, back=_back_link(), next=url_for("index"))
        program = _task_state(
            weblab, request.args.get("task") or weblab_user.data.get("program_task")
        )
        if twin:
            busy = program is not None and program["status"] in ("submitted", "running")
            led = None if busy else _read_pin(tasks, request.args.get("after"))
        else:
            led = _led_state()
        return jsonify(
            active=True,
            time_left=max(0.0, float(weblab_user.time_left)),
            program=program,
            led=led,
        )

    @app.route("/program", methods=["POST"])
    @requires_active
    def program() -> Any:
        try:
            upload = request.files.get("firmware")
            if upload is not None and upload.filename:
                firmware = from_upload(upload.filename, upload.read())
            else:
                firmware = example(request.form.get("example", "blink"))
        except FirmwareError as error:
            return _refuse(str(error))
        try:
            task = tasks.program_firmware.delay(firmware.hex_text, firmware.source)
        except WebLabError as error:
            return _refuse(str(error), 409)
        weblab_user.data["program_task"] = task.task_id
        log.info("demo: %s programs %s", weblab_user.username, firmware.source)
        return jsonify(task_id=task.task_id, firmware=firmware.to_dict())

    @app.route("/cancel", methods=["POST"])
    @requires_active
    def cancel() -> Any:
        task_id = weblab_user.data.get("program_task")
        task = weblab.get_task(task_id) if task_id else None
        if task is None or task.finished:
            return _refuse("nothing is being programmed", 409)
        task.stop()
        return jsonify(task_id=task.task_id, stopping=True)

    @app.route("/led", methods=["POST"])
    @requires_active
    def led() -> Any:
        if twin:
            return _refuse(
                f"on this board the LED is pin {TWIN_LED}, driven by your program: program "
                "a blink to make it blink",
                409,
            )
        wanted = (request.get_json(silent=True) or {}).get("on")
        if not isinstance(wanted, bool):
            return _refuse('send {"on": true} or {"on": false}')
        try:
            task = tasks.set_led.delay(wanted).join(LED_JOIN, error_on_timeout=False)
        except WebLabError as error:
            return _refuse(str(error), 409)
        if not task.done:
            message = (task.error or {}).get("message") or f"the LED task is still {task.status}"
            return _refuse(message, 503)
        weblab_user.data["led"] = bool(task.result)
        weblab_user.data["switches"] = int(weblab_user.data.get("switches", 0)) + 1
        return jsonify(led=weblab_user.data["led"], switches=weblab_user.data["switches"])

    @app.route("/leave", methods=["POST"])
    @requires_login
    def leave() -> Any:
        back = _back_link()
        logout()
        return jsonify(back=back, next=url_for("index"))


def _read_pin(tasks: DemoTasks, after_arg: str | None) -> dict[str, Any] | None:
    """The twin's LED pin and its edges after ``after_arg`` simulated seconds (None: the
    board is busy or gone; the page keeps what it shows)."""
    try:
        after = float(after_arg or 0)
    except ValueError:
        after = 0.0
    if not math.isfinite(after) or after < 0:
        after = 0.0
    try:
        task = tasks.read_pin.delay(after).join(PIN_JOIN, error_on_timeout=False)
    except WebLabError as error:
        log.info("demo: cannot read the LED pin: %s", error)
        return None
    return task.result if task.done else None


def _read_led(tasks: DemoTasks) -> None:
    """Read the LED back once when the page opens (its state after the last session's safe())."""
    try:
        task = tasks.read_led.delay().join(LED_JOIN, error_on_timeout=False)
    except WebLabError as error:
        log.warning("demo: cannot read the LED back: %s", error)
        return
    if task.done:
        weblab_user.data["led"] = bool(task.result)
