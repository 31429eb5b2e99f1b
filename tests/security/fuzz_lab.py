"""The lab the protocol fuzz serves under gunicorn (configured from the environment).

A page and a state-changing route behind ``@requires_active``; every request that reaches the
state-changing route is appended to ``FUZZ_LOG`` (the test checks none came from another site).
"""

import os

from flask import Flask, request, url_for

from labruntime import WebLab, requires_active, weblab_user

app = Flask(__name__, instance_path=os.environ["FUZZ_INSTANCE"])
app.config.update(
    SECRET_KEY=os.environ["FUZZ_SECRET"],
    WEBLAB_USERNAME="rlms",
    WEBLAB_PASSWORD=os.environ["FUZZ_PASSWORD"],
    WEBLAB_REDIS_URL=os.environ["FUZZ_REDIS_URL"],
    WEBLAB_REDIS_BASE=os.environ["FUZZ_REDIS_BASE"],
    WEBLAB_TASK_THREADS_PROCESS=0,
    WEBLAB_AUTOCLEAN_THREAD=False,
    WEBLAB_TIMEOUT=600,
)
weblab = WebLab(app)


@weblab.on_start
def start(client_data, server_data):
    return {"changes": 0}


@weblab.initial_url
def initial():
    return url_for("page")


@app.route("/lab/")
@requires_active
def page():
    return f"hello {weblab_user.username}"


@app.route("/lab/change", methods=["POST"])
@requires_active
def change():
    with open(os.environ["FUZZ_LOG"], "a") as log:
        origin = request.headers.get("Origin", "-")
        site = request.headers.get("Sec-Fetch-Site", "-")
        log.write(f"{weblab_user.username} {origin} {site}\n")
    return {"changed": True}
