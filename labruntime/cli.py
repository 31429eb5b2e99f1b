"""The command line: one click group, `labruntime --app X ...` and `flask --app X weblab ...`.

Commands: ``fake new|status|dispose`` (play the RLMS against your lab), ``clean-expired-users``
(one cleaner pass, for cron or a WEBLAB_AUTOCLEAN_THREAD=False setup), ``redis start|status|stop``
(the embedded server), ``demo`` (serve the demo lab). More commands come from the modules listed in
:data:`COMMAND_MODULES`: each click command named in their ``__all__`` is added to both groups
(or their ``register(group)`` is called), see :func:`_register`.

Errors end as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import urllib.parse
import webbrowser
from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo

from .cli_app import app_command
from .errors import WebLabError
from .globals import get_state

__all__ = ["main", "weblab_group", "app_command", "COMMAND_MODULES"]

COMMAND_MODULES = ("labruntime.cli_tasks", "labruntime.cli_devices")


# -- fake ------------------------------------------------------------------------------------
@click.group("fake")
def fake() -> None:
    """Play the RLMS: start, check and end a fake student's session."""


@fake.command("new")
@click.option("--name", default="John Smith", show_default=True, help="First and last name.")
@click.option("--username", default="john.smith", show_default=True)
@click.option("--username-unique", default="john.smith@institution", show_default=True)
@click.option("--assigned-time", default=300.0, show_default=True, help="Seconds in the slot.")
@click.option("--back", default="http://weblab.deusto.es", show_default=True)
@click.option("--locale", default="en", show_default=True)
@click.option("--experiment-name", default="mylab", show_default=True)
@click.option("--category-name", default="Lab Experiments", show_default=True)
@click.option("--client-initial-data", default=None, help="JSON object given to on_start.")
@click.option("--client-initial-data-file", type=click.File("r"), default=None)
@click.option("--dont-open-browser", is_flag=True, help="Only print the link.")
@click.option(
    "--url-base",
    default=lambda: f"http://{os.environ.get('SERVER_NAME') or 'localhost:5000'}",
    show_default="http://$SERVER_NAME or http://localhost:5000",
    help="Where the lab is served (the link is built on it).",
)
@app_command
def fake_new(app: Flask, **options: Any) -> None:
    """Start a session for a fake student and print (and open) the link."""
    data_text = options["client_initial_data"]
    if options["client_initial_data_file"] is not None:
        data_text = options["client_initial_data_file"].read()
    try:
        client_data = json.loads(data_text) if data_text else {}
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="client initial data") from None
    if not isinstance(client_data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="client initial data")
    _check_url_base(options["url_base"])
    with app.test_client() as client:
        from .testing import FakeRLMS

        server_data = FakeRLMS.server_initial_data(
            username=options["username"],
            username_unique=options["username_unique"],
            full_name=options["name"],
            assigned_time=options["assigned_time"],
            locale=options["locale"],
            experiment_name=options["experiment_name"],
            category_name=options["category_name"],
            style="labsland",  # carries the full name (WebLab-Deusto sends the username)
        )
        config = get_state(app).config
        reply = client.post(
            f"{config.base_url}/weblab/sessions/",
            json={
                "client_initial_data": client_data,
                "server_initial_data": server_data,
                "back": options["back"],
            },
            auth=(config.username, config.password),
            base_url=options["url_base"],
        )
    body = reply.get_json(silent=True) or {}
    if reply.status_code != 200 or "session_id" not in body:
        raise click.ClickException(f"the lab refused the session: {body.get('message', body)}")
    get_state(app).store.set_fake_session(body["session_id"])
    click.echo(f"session {body['session_id']}")
    click.echo(f"open: {body['url']}")
    if not options["dont_open_browser"]:
        webbrowser.open(body["url"])


def _check_url_base(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{url!r} is not an http(s) URL: give where the lab is served, e.g. "
            "http://localhost:5000",
            param_hint="'--url-base'",
        )


def _fake_id(app: Flask) -> str:
    session_id = get_state(app).store.get_fake_session()
    if not session_id:
        raise click.ClickException("no fake session: create one with `fake new`")
    return session_id


@fake.command("status")
@app_command
def fake_status(app: Flask) -> None:
    """Print should_finish of the last fake session (-1: it should end)."""
    session_id = _fake_id(app)
    click.echo(f"Should finish: {get_state(app).sessions.status(session_id)}")


@fake.command("dispose")
@app_command
def fake_dispose(app: Flask) -> None:
    """End the last fake session as the RLMS does (on_dispose runs)."""
    from .views import dispose_reply

    session_id = _fake_id(app)
    outcome = get_state(app).weblab._dispose(app, session_id, "fake dispose")
    click.echo(json.dumps(dispose_reply(outcome)))


# -- cleaner, redis --------------------------------------------------------------------------
@click.command("clean-expired-users")
@app_command
def clean_expired_users(app: Flask) -> None:
    """End every session whose slot is over or that stopped polling, then exit."""
    ended = get_state(app).weblab.clean_expired_users(app)
    click.echo(f"clean-expired-users: {ended} session(s) ended")


@click.group("redis")
def redis_group() -> None:
    """The embedded Redis server of the lab (when WEBLAB_REDIS_URL is unset)."""


def _embedded(app: Flask) -> Any:
    from .embedded import EmbeddedRedis, EmbeddedRedisError, embedded_redis_directory

    if get_state(app).config.redis_url:
        raise click.ClickException("WEBLAB_REDIS_URL is set: that server is not labruntime's")
    try:
        return EmbeddedRedis(embedded_redis_directory(app.instance_path))
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None


@redis_group.command("start")
@app_command
def redis_start(app: Flask) -> None:
    """Start the embedded Redis server (no-op when it runs); print its URL."""
    from .embedded import EmbeddedRedisError

    try:
        click.echo(_embedded(app).ensure_running())
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None


@redis_group.command("status")
@app_command
def redis_status(app: Flask) -> None:
    """Say whether the embedded Redis server runs (exit 1 when it does not)."""
    server = _embedded(app)
    if not server.running:
        click.echo(f"not running ({server.directory})")
        raise SystemExit(1)
    click.echo(f"running, pid {server.pid}, {server.url}")


@redis_group.command("stop")
@app_command
def redis_stop(app: Flask) -> None:
    """Stop the embedded Redis server (data is kept; the next use starts it again)."""
    stopped = _embedded(app).stop()
    click.echo("stopped" if stopped else "it was not running")


# -- demo ------------------------------------------------------------------------------------
@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--instance", default=None, help="Instance folder (default: ~/.labruntime-demo).")
@click.option("--dont-open-browser", is_flag=True)
def demo(host: str, port: int, instance: str | None, dont_open_browser: bool) -> None:
    """Serve the demo lab on the embedded store and print a student's link."""
    from .demo import run_demo

    try:
        run_demo(host, port, instance, open_browser=not dont_open_browser, echo=click.echo)
    except (WebLabError, OSError) as error:
        raise click.ClickException(str(error)) from None


# -- groups ----------------------------------------------------------------------------------
def _register(group: click.Group) -> None:
    for command in (fake, clean_expired_users, redis_group, demo):
        group.add_command(command)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                continue
            raise
        register = getattr(module, "register", None)
        if callable(register):
            register(group)
            continue
        for attr in getattr(module, "__all__", ()):
            command = getattr(module, attr)
            if isinstance(command, click.Command):
                group.add_command(command)


@click.group("labruntime")
@click.option("--app", "app_path", envvar="FLASK_APP", help="The lab: module:app or module.")
@click.pass_context
def main(ctx: click.Context, app_path: str | None) -> None:
    """labruntime: run and operate a remote laboratory."""
    ctx.obj = ScriptInfo(app_import_path=app_path)


@click.group("weblab")
def weblab_group() -> None:
    """labruntime: sessions, tasks and devices of this lab."""


_register(main)
_register(weblab_group)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
