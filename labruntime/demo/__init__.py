"""The demo lab shipped with labruntime: ``labruntime demo`` serves it.

A tiny lab written exactly like a lab author would: a virtual LED the student switches, the
time left, a logout button. It runs on the embedded Redis in its instance folder.
"""

from __future__ import annotations

import logging
import secrets
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request, url_for

from labruntime import WebLab, logout, requires_active, requires_login, weblab_user

__all__ = ["create_app", "run_demo", "DEFAULT_INSTANCE"]

log = logging.getLogger(__name__)
DEFAULT_INSTANCE = Path.home() / ".labruntime-demo"


def _secret(instance: Path, name: str) -> str:
    path = instance / name
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(instance_path: str | Path | None = None, **config: Any) -> Flask:
    """The demo lab app (embedded Redis in ``instance_path`` unless WEBLAB_REDIS_URL given)."""
    instance = Path(instance_path or DEFAULT_INSTANCE).resolve()
    app = Flask(__name__, instance_path=str(instance))
    app.config.update(
        SECRET_KEY=_secret(instance, "secret_key"),
        SESSION_COOKIE_NAME="labruntime_demo",
        WEBLAB_USERNAME="demo",
        WEBLAB_PASSWORD=_secret(instance, "rlms_password"),
        WEBLAB_REDIS_BASE="demo",
        WEBLAB_TIMEOUT=60,
    )
    app.config.update(config)
    weblab = WebLab(app)

    @weblab.on_start
    def start(client_data: dict[str, Any], server_data: dict[str, Any]) -> dict[str, Any]:
        log.info("demo: %s starts", weblab_user.username)
        return {"led": False, "switches": 0}

    @weblab.on_dispose
    def dispose() -> None:
        log.info("demo: %s leaves after %s switches", weblab_user.username, _switches())

    @weblab.initial_url
    def initial_url() -> str:
        return url_for("index")

    @app.route("/")
    @requires_login
    def index() -> Any:
        return render_template("demo.html")

    @app.route("/led", methods=["POST"])
    @requires_active
    def led() -> Any:
        wanted = (request.get_json(silent=True) or {}).get("on")
        weblab_user.data["led"] = bool(wanted)
        weblab_user.data["switches"] = _switches() + 1
        return jsonify(led=weblab_user.data["led"], switches=weblab_user.data["switches"])

    @app.route("/leave", methods=["POST"])
    @requires_login
    def leave() -> Any:
        back = weblab_user.back
        logout()
        return jsonify(back=back)

    return app


def _switches() -> int:
    return int(weblab_user.data.get("switches", 0))


def run_demo(
    host: str = "127.0.0.1",
    port: int = 5000,
    instance_path: str | None = None,
    *,
    open_browser: bool = True,
    echo: Callable[[str], Any] = log.info,
) -> None:
    """Serve the demo, create a fake student and print the link to open."""
    app = create_app(instance_path)
    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}"
    with app.test_client() as client:
        from labruntime.testing import FakeRLMS

        server_data = FakeRLMS.server_initial_data(
            username="student", full_name="Demo Student", assigned_time=600, style="labsland"
        )
        reply = client.post(
            "/weblab/sessions/",
            json={"client_initial_data": {}, "server_initial_data": server_data, "back": base},
            auth=(app.config["WEBLAB_USERNAME"], app.config["WEBLAB_PASSWORD"]),
            base_url=base,
        )
    url = reply.get_json()["url"]
    echo(f"labruntime demo: data in {app.instance_path}")
    echo(f"open this link as the student (10 minutes): {url}")
    if open_browser:
        webbrowser.open(url)
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        if not app.config.get("WEBLAB_REDIS_URL"):
            from labruntime.embedded import stop_embedded_redis

            app.extensions["weblab"].weblab._stop_background(app, timeout=5)
            stop_embedded_redis(app.instance_path)  # the demo leaves no server behind
            echo("labruntime demo: stopped (its Redis too; its data stays for next time)")
