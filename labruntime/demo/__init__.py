"""The demo lab shipped with labruntime: ``labruntime demo`` serves it.

A lab written exactly like a lab author would, as a student meets it: the time left, a firmware
section (upload a .hex or pick a bundled example, Program with a progress bar, Cancel), an LED
switched through small device tasks and read back, and a logout button. Its devices are
simulated (:data:`DEMO_DEVICES`): a simulated Arduino and a simulated GPIO board. Modules:
:mod:`.app` (create_app), :mod:`.lab_tasks`, :mod:`.views`, :mod:`.firmware`.
"""

from __future__ import annotations

import logging
import signal
import threading
import webbrowser
from collections.abc import Callable
from typing import Any

from labruntime.errors import InvalidConfigError

from .app import DEFAULT_INSTANCE, DEMO_DEVICES, create_app, create_lab

__all__ = ["create_app", "run_demo", "DEFAULT_INSTANCE", "DEMO_DEVICES"]

log = logging.getLogger(__name__)


def run_demo(
    host: str = "127.0.0.1",
    port: int = 5000,
    instance_path: str | None = None,
    *,
    open_browser: bool = True,
    echo: Callable[[str], Any] = log.info,
) -> None:
    """Serve the demo, create a fake student and print the link to open."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidConfigError(f"port {port!r} is not a TCP port: give --port 1-65535")
    app, weblab = create_lab(instance_path)
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
    _stop_on_sigterm()
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        weblab.shutdown(app, timeout=5)  # devices safe
        if app.config.get("WEBLAB_REDIS_URL"):
            echo("labruntime demo: stopped")
        else:
            from labruntime.store.embedded import stop_embedded_redis

            stop_embedded_redis(app.instance_path)  # the demo leaves no server behind
            echo("labruntime demo: stopped (its Redis too; its data stays for next time)")


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, ``kill``) ends the demo like Ctrl-C: devices safe, Redis stopped."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
