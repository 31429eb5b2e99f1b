"""``labruntime --app LAB device status [--json]``: who holds each device of WEBLAB_DEVICES.

For every configured device: its live holder (worker id, pid, host, fencing token) or, when
none holds it, the command that starts a worker for it; and its last safe report (when, ok,
the state read back). Reads Redis only: it opens no device.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .cli_devices import device_group
from .device_tasks import worker_command
from .errors import WebLabError
from .globals import get_state

__all__ = ["status_command"]


def device_status(app: Any) -> dict[str, dict[str, Any]]:
    """{name: {url, holder, last_safe, start}} of every configured device."""
    state = get_state(app)
    store = state.weblab._device_store(app)
    names = sorted(state.config.devices)
    holders = store.holders(names)
    return {
        name: {
            "url": state.config.devices[name],
            "holder": holders[name],
            "last_safe": store.last_safe(name),
            "start": None if holders[name] else worker_command(app, [name]),
        }
        for name in names
    }


@device_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@with_appcontext
def status_command(as_json: bool) -> None:
    """Who holds each device of the lab (WEBLAB_DEVICES), and its last safe state."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        status = device_status(app)
    except WebLabError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    if not status:
        click.echo("no devices: WEBLAB_DEVICES is empty")
    for name, info in status.items():
        holder = info["holder"]
        if holder:
            who = (
                f"held by {holder['worker']} (pid {holder['pid']} on {holder['host']}, "
                f"token {holder['token']})"
            )
        else:
            who = f"NOT HELD: start `{info['start']}`"
        click.echo(f"{name}: {info['url']}\n  {who}")
        safe = info["last_safe"]
        if safe:
            ago = time.time() - safe.get("at", time.time())
            mark = "safe" if safe.get("ok") else "NOT SAFE"
            click.echo(f"  last safe report: {mark} {ago:.0f} s ago: {safe.get('state')}")
