"""``create_app``: the demo lab, configured like a small real lab on one machine.

One process holds everything: the web views, two task runner threads and, through them, the
lab's devices (single-process mode). Sessions live in the embedded Redis of the instance folder.

The board is the AVR twin when it can run here (:data:`TWIN_DEVICES`: ``sim:avr``, an
ATmega328P simulated cycle by cycle that runs the uploaded program; its LED is pin 13 as the
program drives it, its UART the page's serial monitor). Otherwise (no simavr or avr-gcc) the
demo says why, on the page and in the log, and falls back to :data:`DEMO_DEVICES`: a simulated
Arduino that takes an upload but runs no AVR code (STK500 bootloader on a pty, 57600 baud like
an older Nano), and ``led``, a simulated GPIO board whose output 17 is wired to input 27,
switched by buttons. The twin's build cache is ``$LABRUNTIME_CACHE_DIR``, else ``~/.cache``, else
(not writable: a service with ProtectHome) the instance folder's ``cache/``.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, url_for

from labruntime import WebLab, WebLabError, serial_monitor, weblab_user
from labruntime.drivers.sim.avr import twin_available
from labruntime.drivers.sim.avr_build import cache_root

from .lab_tasks import LED_IN, LED_OUT, register_tasks
from .rlms_pages import FORBIDDEN_TEMPLATE, register_rlms_pages
from .views import register_views

__all__ = [
    "DEFAULT_INSTANCE",
    "DEMO_DEVICES",
    "TWIN_DEVICES",
    "choose_devices",
    "create_app",
    "is_twin",
]

log = logging.getLogger(__name__)
DEFAULT_INSTANCE = Path.home() / ".labruntime-demo"
DEMO_DEVICES = {
    "board": "sim:arduino?baud=57600&part=atmega328p",
    "led": f"sim:gpio?wired={LED_OUT}-{LED_IN}&safe=0",
}
#: the board when the AVR twin can run here: it runs the student's program
TWIN_DEVICES = {"board": "sim:avr?mcu=atmega328p"}


def _cache_here(instance: Path) -> None:
    """Where the twin's builds go when LABRUNTIME_CACHE_DIR is unset and the default cache
    (``~/.cache``) cannot be written (a service with ProtectHome, a user with no home): the
    instance folder's ``cache/``. The device holder opens ``sim:avr`` with no cache folder of
    its own, so the choice goes through the environment."""
    if os.environ.get("LABRUNTIME_CACHE_DIR"):
        return
    default = cache_root()
    try:
        default.mkdir(parents=True, exist_ok=True)
        if os.access(default, os.W_OK):
            return
    except OSError:
        pass
    os.environ["LABRUNTIME_CACHE_DIR"] = str(instance / "cache")
    log.info(
        "demo: the AVR twin's builds go to %s (%s is not writable)", instance / "cache", default
    )


def choose_devices(instance: Path) -> tuple[dict[str, str], str | None]:
    """:data:`TWIN_DEVICES` if the AVR twin can run here, else :data:`DEMO_DEVICES` and the
    line that says why (shown on the page and logged)."""
    _cache_here(instance)
    ok, why = twin_available()
    if ok:
        log.info("demo: the board is the AVR twin (%s)", why)
        return dict(TWIN_DEVICES), None
    note = (
        f"The AVR twin cannot run on this machine ({why}), so this board is a simpler "
        "simulation that takes your upload but does not run AVR code: the LED below is your own "
        "output pin, switched by buttons, and there is no serial output."
    )
    log.warning("demo: %s", note)
    return dict(DEMO_DEVICES), note


def is_twin(devices: dict[str, str]) -> bool:
    """Whether the demo's board runs the program (``sim:avr``): its LED is the board's pin."""
    return devices.get("board", "").startswith("sim:avr")


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
        WEBLAB_UNAUTHORIZED_TEMPLATE=FORBIDDEN_TEMPLATE,
    )
    app.config.update(config)
    note = None
    if "WEBLAB_DEVICES" not in config:
        app.config["WEBLAB_DEVICES"], note = choose_devices(instance)
    twin = is_twin(app.config["WEBLAB_DEVICES"])
    app.config.update(DEMO_TWIN=twin, DEMO_BOARD_NOTE=note)
    weblab = WebLab(app)
    tasks = register_tasks(weblab, twin=twin)
    if twin:
        serial_monitor(app)

    @weblab.on_start
    def start(client_data: dict[str, Any], server_data: dict[str, Any]) -> dict[str, Any]:
        log.info("demo: %s starts", weblab_user.username)
        if twin:  # the board runs nothing until this student programs it
            try:
                tasks.clear_board.delay()
            except WebLabError as error:
                log.warning("demo: board not cleared for %s: %s", weblab_user.username, error)
        return {"led": None, "switches": 0}

    @weblab.on_dispose
    def dispose() -> None:
        switches = int(weblab_user.data.get("switches", 0))
        log.info("demo: %s leaves after %d LED switches", weblab_user.username, switches)

    @weblab.initial_url
    def initial_url() -> str:
        return url_for("index")

    register_views(app, weblab, tasks)
    register_rlms_pages(app)  # where `back` leads, and the forbidden page: no circles
    return app, weblab
