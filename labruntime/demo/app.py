"""``create_app``: the demo lab, configured like a small real lab on one machine.

One process holds everything: the web views, two task runner threads and, through them, the
lab's devices (single-process mode): ``board``, a simulated Arduino (STK500 bootloader on a
pty, 57600 baud like an older Nano) and ``led``, a simulated GPIO board whose output 17 is
wired to input 27. Sessions live in the embedded Redis of the instance folder.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, url_for

from labruntime import WebLab, weblab_user

from .lab_tasks import LED_IN, LED_OUT, register_tasks
from .views import register_views

__all__ = ["DEFAULT_INSTANCE", "DEMO_DEVICES", "create_app"]

log = logging.getLogger(__name__)
DEFAULT_INSTANCE = Path.home() / ".labruntime-demo"
DEMO_DEVICES = {
    "board": "sim:arduino?baud=57600&part=atmega328p",
    "led": f"sim:gpio?wired={LED_OUT}-{LED_IN}&safe=0",
}


def _secret(instance: Path, name: str) -> str:
    path = instance / name
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(instance_path: str | Path | None = None, **config: Any) -> Flask:
    """The demo lab app (embedded Redis in ``instance_path`` unless WEBLAB_REDIS_URL given).

    ``config`` overrides any key, e.g. ``WEBLAB_DEVICES`` for a real board.
    """
    return create_lab(instance_path, **config)[0]


def create_lab(instance_path: str | Path | None = None, **config: Any) -> tuple[Flask, WebLab]:
    """:func:`create_app`, and its ``WebLab`` (to ``shutdown()`` the lab)."""
    instance = Path(instance_path or DEFAULT_INSTANCE).resolve()
    app = Flask("labruntime.demo", instance_path=str(instance))
    app.config.update(
        SECRET_KEY=_secret(instance, "secret_key"),
        SESSION_COOKIE_NAME="labruntime_demo",
        WEBLAB_USERNAME="demo",
        WEBLAB_PASSWORD=_secret(instance, "rlms_password"),
        WEBLAB_REDIS_BASE="demo",
        WEBLAB_TIMEOUT=60,
        WEBLAB_TASK_THREADS_PROCESS=2,
        WEBLAB_DEVICES=dict(DEMO_DEVICES),
    )
    app.config.update(config)
    weblab = WebLab(app)
    tasks = register_tasks(weblab)

    @weblab.on_start
    def start(client_data: dict[str, Any], server_data: dict[str, Any]) -> dict[str, Any]:
        log.info("demo: %s starts", weblab_user.username)
        return {"led": None, "switches": 0}

    @weblab.on_dispose
    def dispose() -> None:
        switches = int(weblab_user.data.get("switches", 0))
        log.info("demo: %s leaves after %d LED switches", weblab_user.username, switches)

    @weblab.initial_url
    def initial_url() -> str:
        return url_for("index")

    register_views(app, weblab, tasks)
    return app, weblab
