"""WSGI entry point of a lab on the Pi: what gunicorn and the device worker load.

    SCRIPT_NAME=/lab1 gunicorn -c gunicorn.conf.py wsgi_app:application     # the web side
    labruntime --app wsgi_app:application loop --device board=...          # the device worker

Install it as /opt/labruntime/lab1/wsgi_app.py (the units' WorkingDirectory) and replace
``create_lab`` with your own lab (or import your lab's app and call :func:`load_config` on it).
The environment says where things are (the systemd units set these):

* ``LABRUNTIME_CONFIG``: the lab's TOML configuration (lab.example.toml);
* ``LABRUNTIME_DEVICES``: optional TOML device map (devices.rig.toml / devices.sim.toml);
* ``LABRUNTIME_INSTANCE``: the lab's instance folder (its embedded Redis lives there), the same
  for the web server and the worker so they share one store.
"""

from __future__ import annotations

import os
import tomllib

from flask import Flask, render_template_string, url_for

from labruntime import WebLab, requires_active


def load_config(app: Flask) -> None:
    """Load $LABRUNTIME_CONFIG, then $LABRUNTIME_DEVICES (TOML) into ``app.config``."""
    path = os.environ.get("LABRUNTIME_CONFIG")
    if not path:
        raise RuntimeError(
            "LABRUNTIME_CONFIG is not set: point it at the lab's TOML configuration, "
            "e.g. LABRUNTIME_CONFIG=/etc/labruntime/lab1.toml (see config/lab.example.toml)"
        )
    app.config.from_file(path, load=tomllib.load, text=False)
    devices = os.environ.get("LABRUNTIME_DEVICES")
    if devices:
        app.config.from_file(devices, load=tomllib.load, text=False)


def create_lab() -> Flask:
    """The example lab: a page that greets the student and shows the time left."""
    instance = os.environ.get("LABRUNTIME_INSTANCE") or None
    app = Flask(__name__, instance_path=instance)
    load_config(app)
    weblab = WebLab(app)

    @weblab.initial_url
    def initial_url() -> str:
        return url_for("index")

    @app.route("/")
    @requires_active
    def index() -> str:
        # weblab_poll_script() keeps the page polling: without it the student counts as gone
        # after WEBLAB_TIMEOUT seconds and the RLMS ends the session. The template escapes
        # the names (they come from the RLMS).
        return render_template_string(
            "<h1>Hello {{ weblab_user.full_name or weblab_user.username }}</h1>"
            "<p>{{ weblab_user.time_left|int }} seconds left.</p>"
            "{{ weblab_poll_script() }}"
        )

    return app


application = create_lab()
