"""Loading the lab for a CLI command: errors as one clean line, never a traceback.

:func:`app_command` is for commands that only read or change state (``fake``,
``clean-expired-users``, ``redis``, ``device status``): the app is marked ``no_background``, so
a request made through its test client starts no cleaner or task thread in the CLI process.
:func:`readonly_command` is for a status (``fake status``, ``device status``): it never starts
the embedded Redis, it says "not running". :func:`worker_command` is for ``run-tasks`` and
``loop``, which run tasks on purpose. Both call
the command with the lab's :class:`~labruntime.state.LabState`, inside its app context, and
end a labruntime or device error as one line (exit 1).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import NoAppException, ScriptInfo

from labruntime.drivers import DriverError
from labruntime.errors import WebLabError
from labruntime.state import LabState, get_state

from .logs import configure_logging, register_lab_secrets

__all__ = [
    "NO_LAB_EXIT",
    "NoLabError",
    "app_command",
    "how_to_name_the_lab",
    "lab_state",
    "load_app",
    "readonly_command",
    "worker_command",
]

F = TypeVar("F", bound=Callable[..., Any])


NO_LAB_EXIT = 2  # every command that needs a lab exits 2 when none is given (a usage error)


class NoLabError(click.ClickException):
    """No lab given, or the one given cannot be found: one line saying how to name it."""

    exit_code = NO_LAB_EXIT


def how_to_name_the_lab(command_path: str) -> str:
    """The sentence every command that needs a lab prints when it has none."""
    words = command_path.split()
    sub = " ".join(words[2:] if words[:2] == ["flask", "weblab"] else words[1:])
    return (
        f"name the lab: `labruntime --app MODULE:APP {sub}` (e.g. --app mylab:app or --app "
        f"mylab.py), `flask --app MODULE:APP weblab {sub}`, or export FLASK_APP=MODULE:APP"
    )


def load_app() -> Flask:
    """The lab of ``--app``/FLASK_APP; a missing or broken lab is a one-line ClickException."""
    ctx = click.get_current_context()
    info = ctx.find_object(ScriptInfo) or ctx.ensure_object(ScriptInfo)
    try:
        return info.load_app()
    except NoAppException as error:
        if not info.app_import_path:
            raise NoLabError(
                "this command needs a lab and none was given (no --app, no FLASK_APP, no "
                f"wsgi.py or app.py here); {how_to_name_the_lab(ctx.command_path)}"
            ) from None
        raise NoLabError(
            f"{error.format_message().rstrip('.')}; {how_to_name_the_lab(ctx.command_path)}"
        ) from None
    except WebLabError as error:
        raise click.ClickException(f"the lab cannot start: {error}") from None


def lab_state(app: Flask) -> LabState:
    """The lab's state; a ClickException when the app does not use labruntime's WebLab."""
    try:
        return get_state(app)
    except WebLabError as error:
        raise click.ClickException(
            f"{error} (this command needs a lab using labruntime's WebLab)"
        ) from None


def embedded_not_running(state: LabState) -> str | None:
    """None when the lab's store can be read without starting anything; else the line a
    read-only command prints: the embedded Redis is not running (it is never started here)."""
    if state.config.redis_url:
        return None
    from labruntime.store.embedded import (
        EmbeddedRedis,
        EmbeddedRedisError,
        embedded_redis_directory,
    )

    try:
        server = EmbeddedRedis(embedded_redis_directory(state.app.instance_path))
        server.check_owner()
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None
    if server.running:
        return None
    return (
        f"not running: the lab's embedded Redis ({server.directory}) is not running, so no "
        "session, task or device holder exists; the lab's first process starts it (or "
        "`labruntime --app LAB redis start`)"
    )


def _command(func: F, *, background: bool, readonly: bool = False) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if background:  # a worker: its INFO lines on stderr, also under `flask weblab`
            configure_logging()
        app = load_app()
        register_lab_secrets(app.config)  # never in a log line of this process
        state = lab_state(app)
        if readonly:  # a status: report, never start the embedded Redis as a side effect
            idle = embedded_not_running(state)
            if idle is not None:
                click.echo(idle)
                return None
        if not background:
            # a CLI process never runs the web process's cleaner or task threads (hardware!)
            state.no_background = True
        try:
            with app.app_context():
                return func(state, *args, **kwargs)
        except (WebLabError, DriverError, OSError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]


def app_command(func: F) -> F:
    """Run ``func(state, ...)`` in the lab's app context; no background threads here."""
    return _command(func, background=False)


def readonly_command(func: F) -> F:
    """Like :func:`app_command`, for a status: when the embedded Redis is not running it
    prints "not running: ..." (exit 0) instead of starting it."""
    return _command(func, background=False, readonly=True)


def worker_command(func: F) -> F:
    """Run ``func(state, ...)`` in the lab's app context: the worker commands."""
    return _command(func, background=True)
