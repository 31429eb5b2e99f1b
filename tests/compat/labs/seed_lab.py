"""The seed's lab: ``program_device`` as a task, written as a weblablib lab is.

Only the imports differ from weblablib. Deployment settings come from the environment (as a
lab on a Pi reads them); the test sets LAB_REDIS_URL, LAB_REDIS_BASE, LAB_INSTANCE, LAB_SECRET.
"""

import json
import os
import time

from flask import Flask, jsonify, render_template_string, request, session, url_for

from labruntime import (
    WebLab,
    current_task,
    current_task_stopping,
    logout,
    requires_active,
    requires_login,
    weblab_user,
)

app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
app.config.update(
    SECRET_KEY=os.environ["LAB_SECRET"],
    SESSION_COOKIE_NAME="seedlab",
    WEBLAB_USERNAME="weblabdeusto",
    WEBLAB_PASSWORD="secret-rlms-password",
    WEBLAB_REDIS_URL=os.environ["LAB_REDIS_URL"],
    WEBLAB_REDIS_BASE=os.environ["LAB_REDIS_BASE"],
    WEBLAB_CALLBACK_URL="/lab/callback",
    WEBLAB_SESSION_ID_NAME="seed_session_id",
    WEBLAB_TASK_THREADS_PROCESS=int(os.environ.get("LAB_TASK_THREADS", "2")),
    WEBLAB_AUTOCLEAN_THREAD=os.environ.get("LAB_AUTOCLEAN", "True"),
    WEBLAB_TIMEOUT=os.environ.get("LAB_TIMEOUT", "15"),
)
weblab = WebLab(app)
PROGRAM_SECONDS = 0.3  # the seed says 10 s; the tests do not wait that long


def record(event, **fields):
    os.makedirs(app.instance_path, exist_ok=True)
    with open(os.path.join(app.instance_path, "events.jsonl"), "a") as out:
        out.write(json.dumps({"event": event, **fields}) + "\n")


@weblab.initial_url
def initial_url():
    return url_for("index")


@weblab.on_start
def start(client_data, server_data):
    # as weblablib's "complete" example: fill weblab_user.data in on_start, return nothing
    weblab_user.data["local_identifier"] = weblab.create_token()
    weblab_user.data["client"] = client_data
    record("start", username=weblab_user.username, time_left=weblab_user.time_left)


@weblab.on_dispose
def dispose():
    record(
        "dispose",
        session_id=weblab_user.session_id,
        local_identifier=weblab_user.data.get("local_identifier"),
        running=[task.name for task in weblab.running_tasks],
        tasks=[task.name for task in weblab.tasks],
    )


@weblab.task()
def program_device(contents):
    """Programs a device. Typically takes 5-10 seconds"""
    if weblab_user.time_left < 10:
        raise Exception("Error: user does not have enough time to run it!")
    if current_task:  # None when called directly, as in weblablib
        current_task.data["progress"] = 0
        current_task.store()
    deadline = time.time() + PROGRAM_SECONDS
    while time.time() < deadline:
        if current_task_stopping:
            return -1
        time.sleep(0.02)
    if current_task:
        current_task.data["progress"] = 100
        current_task.store()
    return len(contents)


@weblab.task(unique="global")
def calibrate(seconds):
    deadline = time.time() + seconds
    while time.time() < deadline and not current_task_stopping:
        time.sleep(0.02)
    return "stopped" if current_task_stopping else "calibrated"


@weblab.task(unique="user")
def reset_board():
    return weblab_user.username


def describe(task):
    return {
        "task_id": task.task_id,
        "name": task.name,
        "status": task.status,
        "result": task.result,
        "error": task.error,
        "data": dict(task.data),
        "session_id": task.session_id,
        "finished": task.finished,
    }


@app.route("/lab/")
@requires_login
def index():
    return render_template_string(
        "<p>Hello {{ weblab_user.full_name }} ({{ weblab_user.username_unique }})</p>"
        "<p>{{ weblab_user.time_left|int }} s left</p>{{ weblab_poll_script() }}"
    )


@app.route("/lab/program", methods=["POST"])
@requires_active
def program():
    task = program_device.delay(request.form.get("code", "my-own-code"))
    session["programming_task"] = task.task_id
    weblab_user.data["last_task"] = task.task_id
    return jsonify(describe(task))


@app.route("/lab/program-now", methods=["POST"])
@requires_active
def program_now():
    # runs it in this thread, exactly as if it was not a task
    return jsonify(result=program_device(request.form.get("code", "abc")))


@app.route("/lab/run-sync", methods=["POST"])
@requires_active
def run_sync():
    task = program_device.run_sync(request.form.get("code", "abcd"), timeout=20)
    return jsonify(describe(task))


@app.route("/lab/calibrate", methods=["POST"])
@requires_active
def start_calibration():
    from labruntime import AlreadyRunningError

    try:
        task = calibrate.delay(float(request.form.get("seconds", "30")))
    except AlreadyRunningError as error:
        return jsonify(error=str(error), builtin=isinstance(error, Exception)), 409
    return jsonify(describe(task))


@app.route("/lab/reset", methods=["POST"])
@requires_active
def reset():
    from labruntime import AlreadyRunningError

    try:
        return jsonify(describe(reset_board.delay()))
    except AlreadyRunningError as error:
        return jsonify(error=str(error)), 409


@app.route("/lab/stop/<name>", methods=["POST"])
@requires_active
def stop(name):
    weblab.join_tasks(name, timeout=10, stop=True)
    return jsonify([describe(task) for task in weblab.get_tasks(name)])


@app.route("/lab/task/<task_id>")
@requires_login
def task_status(task_id):
    task = weblab.get_task(task_id)
    if task is None:
        return jsonify(found=False), 404
    return jsonify(describe(task))


@app.route("/lab/task-by-name/<name>")
@requires_login
def task_by_name(name):
    task = weblab.get_task(name)
    running = weblab.get_running_task(name)
    return jsonify(
        latest=describe(task) if task else None,
        running=describe(running) if running else None,
        all=[t.task_id for t in weblab.get_tasks(name)],
        running_all=[t.task_id for t in weblab.get_running_tasks(name)],
    )


@app.route("/lab/task-by-function")
@requires_login
def task_by_function():
    # weblablib's "complete" example: weblab.get_task(program_device)
    task = weblab.get_task(program_device)
    return jsonify(describe(task) if task else None)


@app.route("/lab/join/<task_id>")
@requires_login
def join(task_id):
    from labruntime import TimeoutError as LabTimeoutError

    task = weblab.get_task(task_id)
    timeout = float(request.args.get("timeout", "10"))
    try:
        task.join(timeout=timeout)
    except LabTimeoutError as error:
        return jsonify(timeout=True, builtin=isinstance(error, TimeoutError), status=task.status)
    return jsonify(describe(task))


@app.route("/lab/tasks")
@requires_login
def tasks():
    return jsonify(
        tasks=[t.name for t in weblab.tasks], running=[t.name for t in weblab.running_tasks]
    )


@app.route("/lab/me")
@requires_login
def me():
    user = weblab_user
    return jsonify(
        kind=user.__class__.__name__,  # LocalProxy forwards __class__
        active=user.active,
        is_anonymous=user.is_anonymous,
        session_id=user.session_id,
        username=user.username,
        username_unique=user.username_unique,
        full_name=user.full_name,
        locale=user.locale,
        back=user.back,
        time_left=user.time_left,
        experiment_name=user.experiment_name,
        category_name=user.category_name,
        experiment_id=user.experiment_id,
        request_client_data=dict(user.request_client_data),
        request_server_data=dict(user.request_server_data),
        start_date=user.start_date,
        max_date=user.max_date,
        data=dict(user.data),
    )


@app.route("/lab/logout", methods=["POST"])
@requires_login
def logout_view():
    if weblab_user.active:
        logout()
    return jsonify(error=False)
