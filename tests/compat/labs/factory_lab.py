"""A weblablib lab in the application-factory style: ``WebLab()`` then ``init_app(app)``.

Uses the seed's spellings: WEBLAB_BASE for the base URL, the Flask cookie keys of "Multiple
laboratories through the same server", a user_loader, the template globals, poll and logout.
"""

import os

from flask import Flask, jsonify, render_template_string

from labruntime import (
    WebLab,
    get_weblab_user,
    logout,
    poll,
    requires_active,
    requires_login,
    socket_requires_active,
    weblab_user,
)

weblab = WebLab(callback_url="/lab2/callback")
USERS = {"carol@uni": {"folder": "/srv/lab/carol"}}


def create_app():
    app = Flask(__name__, instance_path=os.environ["LAB_INSTANCE"])
    app.config.update(
        SECRET_KEY=os.environ["LAB_SECRET"],
        SESSION_COOKIE_NAME="lab2sess",
        SESSION_COOKIE_PATH="/",
        WEBLAB_USERNAME="weblabdeusto",
        WEBLAB_PASSWORD="secret-rlms-password",
        WEBLAB_BASE="/private",
        WEBLAB_REDIS_URL=os.environ["LAB_REDIS_URL"],
        WEBLAB_REDIS_BASE=os.environ["LAB_REDIS_BASE"],
        WEBLAB_AUTOPOLL="False",
        WEBLAB_UNAUTHORIZED_LINK="http://rlms.invalid/login",
        WEBLAB_TASK_THREADS_PROCESS=0,
        WEBLAB_AUTOCLEAN_THREAD=False,
    )
    weblab.init_app(app)
    app.register_blueprint(views)
    return app


from flask import Blueprint  # noqa: E402  (labs often define views after the factory)

views = Blueprint("main", __name__)


@weblab.initial_url
def initial_url():
    return "/home"


@weblab.on_start
def start(client_data, server_data):
    return {"counter": 0, "lang": weblab_user.locale}


@weblab.user_loader
def load_user(username_unique):
    return USERS.get(username_unique)


@views.route("/home")
@requires_login
def home():
    return render_template_string(
        "{{ weblab_user.username }}|{{ weblab.__class__.__name__ }}|{{ weblab_poll_script() }}"
    )


@views.route("/count", methods=["POST"])
@requires_active
def count():
    weblab_user.data["counter"] += 1  # saved at the end of the request
    return jsonify(counter=weblab_user.data["counter"])


@views.route("/count-stored", methods=["POST"])
@requires_active
def count_stored():
    weblab_user.data["counter"] += 10
    weblab_user.data.store()
    fresh = get_weblab_user(cached=False)
    return jsonify(counter=fresh.data["counter"])


@views.route("/user")
@requires_active
def user():
    return jsonify(user=weblab_user.user, time_without_polling=weblab_user.time_without_polling)


@views.route("/lang")
@requires_login
def lang():
    return jsonify(locale=weblab_user.locale, on_start=weblab_user.data["lang"])


@views.route("/poll", methods=["POST"])
@requires_active
def manual_poll():
    poll()
    return jsonify(polled=True)


@views.route("/bye", methods=["POST"])
@requires_login
def bye():
    logout()
    return jsonify(bye=True)


@views.route("/socket-like")
@socket_requires_active
def socket_like():
    return "handler ran"


app = create_app()
