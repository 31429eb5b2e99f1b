"""A lab written the weblablib way (module-level ``app`` and ``weblab``), for
``test_weblablib_compat.py``: the lab's own tests drive it through ``app.test_client()``,
``app.test_cli_runner()`` and ``app.logger``, as a weblablib lab's tests do.

``LAB_THREADS`` (default 0) runner threads in this process; with threads, it holds the
``lamp`` device, a :class:`Lamp` that records what reached it.
"""

import os
import threading

from flask import Flask, jsonify, url_for

from labruntime import (
    WebLab,
    current_devices,
    current_task,
    current_task_stopping,
    requires_active,
    weblab_user,
)
from labruntime.drivers import Device, register_scheme


class Lamp(Device):
    """A lamp whose ``switch`` is a device operation with a safe point before it acts."""

    scheme = "complamp"
    switched: list[str] = []  # what reached the hardware, in order

    def switch(self, value: str) -> None:
        with self.ops.operation("switch") as op:
            op.check()  # the safe point: a stopped task's operation ends here
            Lamp.switched.append(value)

    def _drive_safe(self) -> dict:
        return {"on": False}

    def _close(self) -> None:
        pass


register_scheme("complamp", lambda url, *, name=None, **kw: Lamp(url, name=name))
threads = int(os.environ.get("LAB_THREADS", "0"))

app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
app.config.update(
    SECRET_KEY=os.environ["LAB_SECRET"],
    WEBLAB_USERNAME="weblabdeusto",
    WEBLAB_PASSWORD="secret-rlms-password",
    WEBLAB_REDIS_URL=os.environ["LAB_REDIS_URL"],
    WEBLAB_REDIS_BASE=os.environ["LAB_REDIS_BASE"],
    WEBLAB_AUTOCLEAN_THREAD=False,
    WEBLAB_TASK_THREADS_PROCESS=threads,
    WEBLAB_TIMEOUT=60,
    WEBLAB_DEVICES={"lamp": "complamp:1"},
    LAB_NAME="compat-lab",
    ENVIRONMENT="test",
)
weblab = WebLab(app)
go = threading.Event()  # the `hold` task waits for it


@weblab.initial_url
def initial_url():
    return url_for("lab")


@weblab.task()
def calibrate(steps):
    done = 0
    for _ in range(steps):
        if current_task_stopping:
            break  # cleanup code a lab runs when asked to stop
        done += 1
    return {"stopping": bool(current_task_stopping), "done": done}


@weblab.task()
def join_myself():
    current_task.join()


@weblab.task(device="lamp")
def hold():
    go.wait(30)
    return "held"


@weblab.task(device="lamp")
def light():
    current_devices["lamp"].switch("on")
    return "lit"


@app.route("/lab")
@requires_active
def lab():
    return jsonify(user=weblab_user.username, time_left=weblab_user.time_left)


@app.route("/calibrate", methods=["POST"])
@requires_active
def start_calibration():
    return jsonify(task_id=calibrate.delay(1000).task_id)


@app.route("/calibrate/stop", methods=["POST"])
@requires_active
def stop_calibration():
    weblab.join_tasks(calibrate, timeout=0.1, stop=True)  # no worker here: returns at 0.1 s
    return jsonify(stopping=[task.stopping for task in weblab.get_tasks(calibrate)])
