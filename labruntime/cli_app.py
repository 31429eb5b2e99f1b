"""Loading the lab for a CLI command: errors as one clean line, never a traceback.

:func:`app_command` is for commands that only read or change state (``fake``,
``clean-expired-users``, ``redis``): the app is marked ``no_background``, so a request made
through its test client starts no cleaner or task thread in the CLI process.
:func:`worker_command` is for ``run-tasks`` and ``loop``, which run tasks on purpose.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import NoAppException, ScriptInfo

from .errors import WebLabError
from .globals import get_state

__all__ = ["load_app", "app_command", "worker_command"]

F = TypeVar("F", bound=Callable[..., Any])


def load_app() -> Flask:
    """The lab of ``--app``/FLASK_APP; a missing or broken lab is a one-line ClickException."""
    ctx = click.get_current_context()
    info = ctx.find_object(ScriptInfo) or ctx.ensure_object(ScriptInfo)
    try:
        return info.load_app()
    except NoAppException as error:
        raise click.ClickException(
            f"{error.format_message()} (give the lab with --app module:app or FLASK_APP)"
        ) from None
    except WebLabError as error:
        raise click.ClickException(f"the lab cannot start: {error}") from None


def _lab_state(app: Flask) -> Any:
    try:
        return get_state(app)
    except WebLabError as error:
        raise click.ClickException(
            f"{error} (this command needs a lab using labruntime's WebLab)"
        ) from None


def app_command(func: F) -> F:
    """Run ``func(app, ...)`` inside the lab's app context, no background threads here."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = load_app()
        # a CLI process never runs the web process's cleaner or task threads (hardware!)
        _lab_state(app).no_background = True
        try:
            with app.app_context():
                return func(app, *args, **kwargs)
        except (WebLabError, OSError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper  # type: ignore[return-value]


def worker_command(func: F) -> F:
    """Run ``func(...)`` inside the lab's app context (``current_app``): the worker commands."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = load_app()
        _lab_state(app)
        with app.app_context():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
