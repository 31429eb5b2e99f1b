"""The task commands: ``run-tasks`` (run what is queued, then exit) and ``loop`` (run tasks and
clean expired users until SIGTERM). Both work as ``labruntime --app X ...`` and
``flask --app X weblab ...``.

On SIGTERM (or Ctrl-C) a worker stops taking tasks, raises ``stopping`` on the ones it runs
(which cancels their device operations), waits for them up to ``--stop-timeout`` seconds,
drives its devices safe, releases them and exits 0.

``--device NAME`` (URL from WEBLAB_DEVICES), ``--device NAME=URL`` or ``--device URL`` (the
lab's only device), repeatable: the worker opens and holds these devices and runs the tasks
that need them (see :mod:`labruntime.device_worker`). A device another process holds: exit 1
with a message naming the holder.
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

from .cli_app import worker_command
from .device_worker import HOLDER_KEY, hold_devices, parse_device_options, release_devices
from .drivers import DriverError
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
        except (WebLabError, DriverError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _on_signals(event: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _group(
    threads: int,
    drain: bool,
    kind: str,
    pools: tuple[str, ...],
    devices: tuple[str, ...],
    stop: threading.Event,
) -> WorkerGroup:
    """The worker group, holding ``devices`` (``--device`` values) first if any. If another
    holder takes one of them (this process stalled past its lease), ``stop`` is set."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    weblab = state.weblab
    group = WorkerGroup(
        weblab, app, weblab._task_store(app), threads, drain=drain, kind=kind, pools=pools
    )
    if devices:
        bindings = parse_device_options(dict(state.config.devices), devices)
        holder = hold_devices(weblab, app, bindings, group.worker_id)
        holder.on_lost = lambda names: stop.set()
        group.add_pools(holder.pools)
        click.echo(f"{kind}: holding device(s) {', '.join(sorted(bindings))}")
    return group


def _stop(group: WorkerGroup, timeout: float) -> bool:
    """Stop the tasks, then drive the devices safe and release them. A device another holder
    took meanwhile ends the command with an error (exit 1: systemd restarts the worker)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    holder = app.extensions.get(HOLDER_KEY)
    lost = sorted(holder.lost) if holder is not None else []
    try:
        clean = group.stop(timeout)
    finally:
        release_devices(app)
    if lost:
        raise click.ClickException(
            f"device(s) {', '.join(lost)} were taken by another holder while this worker "
            "stalled; it stopped. Check that one worker per device runs "
            "(`labruntime device status`)"
        )
    return clean


_DEVICE = click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="[NAME=]URL|NAME",
    help="Hold this device and run the tasks that need it (repeat it).",
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
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Tasks in parallel."
)
@click.option("--stop-timeout", default=30.0, show_default=True, help="Seconds to wait on SIGTERM.")
@_POOL
@_DEVICE
@worker_command
@_clean_errors
def run_tasks_command(
    threads: int, stop_timeout: float, pools: tuple[str, ...], devices: tuple[str, ...]
) -> None:
    """Run the tasks queued now, then exit (for cron, or WEBLAB_NO_THREAD setups)."""
    stop = threading.Event()
    _on_signals(stop)
    group = _group(threads, drain=True, kind="run-tasks", pools=pools, devices=devices, stop=stop)
    group.start()
    while not group.wait(0.2):
        if stop.is_set():
            break
    _stop(group, stop_timeout)
    click.echo("run-tasks: the queue is empty" if not stop.is_set() else "run-tasks: stopped")


@click.command("loop")
@click.option(
    "--threads", default=5, show_default=True, type=click.IntRange(min=1), help="Tasks in parallel."
)
@click.option(
    "--reload/--no-reload",
    default=False,
    help="weblablib's flag, accepted; --reload only warns: restart the worker to load new code.",
)
@click.option("--stop-timeout", default=30.0, show_default=True, help="Seconds to wait on SIGTERM.")
@_POOL
@_DEVICE
@worker_command
@_clean_errors
def loop_command(
    threads: int,
    reload: bool,
    stop_timeout: float,
    pools: tuple[str, ...],
    devices: tuple[str, ...],
) -> None:
    """Run tasks and clean expired users until SIGTERM."""
    if reload:
        # a reloader would kill running tasks (and their devices) mid-operation on each edit
        click.echo(
            "Warning: loop --reload is not supported (ignored): restart it for new code", err=True
        )
    from .sessions import CleanerThread

    stop = threading.Event()
    _on_signals(stop)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    group = _group(
        threads, drain=False, kind="loop", pools=pools, devices=devices, stop=stop
    ).start()
    cleaner = CleanerThread(
        lambda: state.weblab._clean(app), state.store.next_due, state.config.cleaner_interval
    )
    cleaner.start()
    click.echo(f"loop: worker {group.worker_id}, {threads} thread(s); SIGTERM to stop")
    stop.wait()
    click.echo("loop: stopping (no new tasks; running ones asked to stop)")
    try:
        clean = _stop(group, stop_timeout)
    finally:
        cleaner.stop()
    click.echo("loop: stopped" if clean else "loop: stopped; some tasks did not end in time")
