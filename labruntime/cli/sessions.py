"""Session commands: ``fake new|status|dispose`` (play the RLMS against your lab) and
``clean-expired-users`` (one cleaner pass, for cron or a WEBLAB_AUTOCLEAN_THREAD=False setup).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import webbrowser
from typing import Any

import click

from labruntime.sessions.views import dispose_reply
from labruntime.state import LabState
from labruntime.testing import FakeRLMS

from .app import app_command, readonly_command

__all__ = ["clean_expired_users", "fake"]


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
def fake_new(state: LabState, **options: Any) -> None:
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
    with state.app.test_client() as client:
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
        config = state.config
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
    state.sessions.store.set_fake_session(body["session_id"])
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


def _fake_id(state: LabState) -> str:
    session_id = state.sessions.store.get_fake_session()
    if not session_id:
        raise click.ClickException(  # "Session not found": weblablib's phrase
            "Session not found: no fake session; create one with `flask weblab fake new`"
        )
    return session_id


@fake.command("status")
@readonly_command
def fake_status(state: LabState) -> None:
    """Print should_finish of the last fake session (-1: it should end)."""
    session_id = _fake_id(state)
    click.echo(f"Should finish: {state.sessions.status(session_id)}")


@fake.command("dispose")
@app_command
def fake_dispose(state: LabState) -> None:
    """End the last fake session as the RLMS does (on_dispose runs); prints the RLMS reply.

    A session that already ended, or that the lab no longer knows, is said so (exit 1)."""
    session_id = _fake_id(state)
    before = state.sessions.store.session_states([session_id])[0]
    outcome = state.dispose(session_id, "fake dispose")
    if not outcome.found:
        raise click.ClickException(
            "the last fake session is unknown to the lab (it ended long ago and was "
            "forgotten, or its data was removed): nothing to end; start one with `fake new`"
        )
    if before is not None and before.status == "expired":
        raise click.ClickException(
            "the last fake session had already ended: nothing to end (the lab answered the "
            "RLMS 'Deleted' again); start another with `fake new`"
        )
    click.echo(json.dumps(dispose_reply(outcome)))


# -- cleaner ---------------------------------------------------------------------------------
@click.command("clean-expired-users")
@app_command
def clean_expired_users(state: LabState) -> None:
    """End every session whose slot is over or that stopped polling, then exit."""
    ended = state.clean()
    click.echo(f"clean-expired-users: {ended} session(s) ended")
