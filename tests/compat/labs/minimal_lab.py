"""The smallest weblablib-style lab: what the README shows, with the imports changed."""

import os

from flask import Flask, url_for

from labruntime import WebLab, requires_active, weblab_user

app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
app.config.update(
    SECRET_KEY=os.environ["LAB_SECRET"],
    WEBLAB_USERNAME="weblabdeusto",
    WEBLAB_PASSWORD="secret-rlms-password",
    WEBLAB_REDIS_URL=os.environ["LAB_REDIS_URL"],
    WEBLAB_REDIS_BASE=os.environ["LAB_REDIS_BASE"],
    WEBLAB_AUTOCLEAN_THREAD=False,
    WEBLAB_TASK_THREADS_PROCESS=0,
)
weblab = WebLab(app)


@weblab.initial_url
def initial_url():
    return url_for("index")


@app.route("/")
@requires_active
def index():
    return f"Hello {weblab_user.username} ({weblab_user.locale})"
