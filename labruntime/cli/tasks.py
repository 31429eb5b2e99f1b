"""The task commands: ``run-tasks`` (run what is queued, then exit) and ``loop`` (run tasks and
clean expired users until SIGTERM). Both work as ``labruntime --app X ...`` and
``flask --app X weblab ...``.

On SIGTERM (or Ctrl-C) a worker stops taking tasks, raises ``stopping`` on the ones it runs
(which cancels their device operations), waits for them up to ``--stop-timeout`` seconds,
drives its devices safe, releases them and exits 0.

``--device NAME`` (URL from WEBLAB_DEVICES), ``--device NAME=URL`` or ``--device URL`` (the
lab's only device), repeatable: the worker opens and holds these devices and runs the tasks
that need them (see :mod:`labruntime.devices.option`). A device another process holds: exit 1
with a message naming the holder.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from labruntime.devices.option import parse_device_options
from labruntime.state import LabState
from labruntime.tasks.worker import WorkerGroup, WorkerOutcome, run_worker

from .app import F, worker_command

log = logging.getLogger(__name__)

__all__ = ["loop_command", "run_tasks_command"]


def _on_signals(event: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run(
    state: LabState,
    *,
    kind: str,
    threads: int,
    drain: bool,
    pools: tuple[str, ...],
    devices: tuple[str, ...],
    stop_timeout: float,
    on_started: Callable[[WorkerGroup], object] | None = None,
    on_stopping: Callable[[], object] | None = None,
) -> WorkerOutcome:
    """Run the worker (the same runner as ``WebLab.run_tasks()``/``loop()``); a device another
    holder took meanwhile ends the command with an error (exit 1: systemd restarts it)."""
    stop = threading.Event()
    _on_signals(stop)
    bindings = parse_device_options(dict(state.config.devices), devices) if devices else None

    def started(group: WorkerGroup) -> None:
        if bindings:  # said once they are held: scripts and tests wait for this line
            click.echo(f"{kind}: holding device(s) {', '.join(sorted(bindings))}")
            for name in sorted(bindings):  # the full URL: the port and options really used
                click.echo(f"{kind}:   {name} = {bindings[name]}")
        if on_started is not None:
            on_started(group)

    outcome = run_worker(
        state.tasks,
        threads=threads,
        kind=kind,
        stop=stop,
        drain=drain,
        pools=pools,
        devices=bindings,
        cleaner=None if drain else state.new_cleaner(reap=False),  # its heartbeat reaps
        stop_timeout=stop_timeout,
        on_started=started,
        on_stopping=on_stopping,
    )
    if outcome.lost:
        raise click.ClickException(
            f"device(s) {', '.join(outcome.lost)} were taken by another holder while this "
            "worker stalled; it stopped. Check that one worker per device runs "
            "(`labruntime device status`)"
        )
    return outcome


def _worker_options(threads: int) -> Callable[[F], F]:
    """The options both worker commands take: ``--threads`` (default ``threads``),
    ``--stop-timeout``, ``--pool``, ``--device``; they reach :func:`_run` as its keywords."""
    options = [
        click.option(
            "--threads",
            default=threads,
            show_default=True,
            type=click.IntRange(min=1),
            help=(
                "Runner threads on the --pool queues (at least one per pool); each device "
                "queue of --device gets one more. The log says the total."
            ),
        ),
        click.option(
            "--stop-timeout", default=30.0, show_default=True, help="Seconds to wait on SIGTERM."
        ),
        click.option(
            "--pool",
            "pools",
            multiple=True,
            default=("default",),
            show_default=True,
            help="Queue(s) to take tasks from (repeat it; threads are spread over the pools).",
        ),
        click.option(
            "--device",
            "devices",
            multiple=True,
            metavar="[NAME=]URL|NAME",
            help=(
                "Hold this device and run the tasks that need it (repeat it). NAME: its URL "
                "from WEBLAB_DEVICES; NAME=URL or URL (the lab's only device): a URL of the "
                "same kind, or serial:PORT to move a serial-attached device to PORT keeping "
                "its options."
            ),
        ),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):  # listed in --help in this order
            func = option(func)
        return func

    return decorate


@click.command("run-tasks")
@_worker_options(threads=1)
@worker_command
def run_tasks_command(state: LabState, **options: Any) -> None:
    """Run the tasks queued now, then exit: cron-style draining.

    \b
    For a cron job or a one-off batch (a lab with WEBLAB_NO_THREAD). With --device it holds
    the devices only while it drains: when the queue is empty it stops admitting tasks for
    them (.delay() is refused from then on, naming the worker to start), runs what was
    admitted meanwhile, drives the devices safe and releases them. A device task is admitted
    only while a worker holds its device, so this finishes what a stopped worker left queued;
    it does not serve students: `loop --device` (a systemd service) does.
    """
    outcome = _run(state, kind="run-tasks", drain=True, **options)
    click.echo("run-tasks: the queue is empty" if not outcome.stopped else "run-tasks: stopped")


@click.command("loop")
@_worker_options(threads=5)
@click.option(
    "--reload/--no-reload",
    default=False,
    help="weblablib's flag, accepted; --reload only warns: restart the worker to load new code.",
)
@worker_command
def loop_command(state: LabState, reload: bool, **options: Any) -> None:
    """Run tasks and clean expired users until SIGTERM: the long-running worker.

    \b
    What a lab with devices runs (a systemd service, restarted if it dies): with --device
    it holds those devices for as long as it runs, so students' device tasks are admitted
    at any time. SIGTERM: no new tasks, running ones asked to stop, devices driven safe and
    released, exit 0. For a one-off drain of the queue, use `run-tasks`.
    """
    threads = options["threads"]
    if reload:
        # a reloader would kill running tasks (and their devices) mid-operation on each edit
        click.echo(
            "Warning: loop --reload is not supported (ignored): restart it for new code", err=True
        )

    def started(group: WorkerGroup) -> None:
        click.echo(
            f"loop: worker {group.worker_id}, {group.threads} runner thread(s) ({threads} "
            f"asked, {group.threads - threads} more for the device and pool queues); SIGTERM "
            "to stop"
            if group.threads != threads
            else f"loop: worker {group.worker_id}, {threads} runner thread(s); SIGTERM to stop"
        )

    outcome = _run(
        state,
        kind="loop",
        drain=False,
        on_started=started,
        on_stopping=lambda: click.echo("loop: stopping (no new tasks; running ones asked to stop)"),
        **options,
    )
    click.echo(
        "loop: stopped" if outcome.clean else "loop: stopped; some tasks did not end in time"
    )
