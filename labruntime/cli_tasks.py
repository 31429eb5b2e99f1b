"""The task commands: ``run-tasks`` (run what is queued, then exit) and ``loop`` (run tasks and
clean expired users until SIGTERM). Both work as ``labruntime --app X ...`` and
``flask --app X weblab ...``.

On SIGTERM (or Ctrl-C) a worker stops taking tasks, raises ``stopping`` on the ones it runs,
waits for them up to ``--stop-timeout`` seconds and exits 0.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .errors import WebLabError
from .globals import get_state
from .worker import WorkerGroup

log = logging.getLogger(__name__)

__all__ = ["loop_command", "run_tasks_command"]


def _clean_errors(func: Callable[..., None]) -> Callable[..., None]:
    """A labruntime error (Redis down, lab not initialized...) ends as one line, exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except WebLabError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _on_signals(event: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _group(threads: int, drain: bool, kind: str, pools: tuple[str, ...]) -> WorkerGroup:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    weblab = get_state(app).weblab
    return WorkerGroup(
        weblab, app, weblab._task_store(app), threads, drain=drain, kind=kind, pools=pools
    )


_POOL = click.option(
    "--pool",
    "pools",
    multiple=True,
    default=("default",),
    show_default=True,
    help="Queue(s) to take tasks from (repeat it; threads are spread over the pools).",
)


@click.command("run-tasks")
@click.option("--threads", default=1, show_default=True, help="Tasks run in parallel.")
@click.option("--stop-timeout", default=30.0, show_default=True, help="Seconds to wait on SIGTERM.")
@_POOL
@with_appcontext
@_clean_errors
def run_tasks_command(threads: int, stop_timeout: float, pools: tuple[str, ...]) -> None:
    """Run the tasks queued now, then exit (for cron, or WEBLAB_NO_THREAD setups)."""
    stop = threading.Event()
    _on_signals(stop)
    group = _group(threads, drain=True, kind="run-tasks", pools=pools).start()
    while not group.wait(0.2):
        if stop.is_set():
            break
    group.stop(stop_timeout)
    click.echo("run-tasks: the queue is empty" if not stop.is_set() else "run-tasks: stopped")


@click.command("loop")
@click.option("--threads", default=5, show_default=True, help="Tasks run in parallel.")
@click.option("--stop-timeout", default=30.0, show_default=True, help="Seconds to wait on SIGTERM.")
@_POOL
@with_appcontext
@_clean_errors
def loop_command(threads: int, stop_timeout: float, pools: tuple[str, ...]) -> None:
    """Run tasks and clean expired users until SIGTERM."""
    from .sessions import CleanerThread

    stop = threading.Event()
    _on_signals(stop)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    group = _group(threads, drain=False, kind="loop", pools=pools).start()
    cleaner = CleanerThread(
        lambda: state.weblab._clean(app), state.store.next_due, state.config.cleaner_interval
    )
    cleaner.start()
    click.echo(f"loop: worker {group.worker_id}, {threads} thread(s); SIGTERM to stop")
    stop.wait()
    click.echo("loop: stopping (no new tasks; running ones asked to stop)")
    clean = group.stop(stop_timeout)
    cleaner.stop()
    click.echo("loop: stopped" if clean else "loop: stopped; some tasks did not end in time")
