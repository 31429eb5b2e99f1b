"""Admission of a device task at ``.delay()``: may it start now?

Every device must be configured and have a live holder, the same one for all; else
:class:`~labruntime.errors.DeviceUnavailableError` says which worker to start. A session being
disposed may start no more device tasks, nor may anyone use a device whose last ``safe()``
failed (the lab is not ready until one succeeds). The student's time is checked by the task
itself: :func:`~labruntime.devices.time_budget.require_time`.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from labruntime.errors import DeviceUnavailableError
from labruntime.store.devices import DeviceStore

from .routing import device_pool, worker_command

__all__ = ["admit"]


def admit(
    store: DeviceStore,
    configured: Mapping[str, str],
    app: Flask,
    task_name: str,
    names: list[str],
    session_id: str | None,
    used_ttl: float,
) -> str:
    """Check that ``names`` can be used now; returns the pool to queue the task on."""
    unknown = [n for n in names if n not in configured]
    if unknown:
        raise DeviceUnavailableError(
            f"task {task_name} needs device(s) {unknown} that WEBLAB_DEVICES does not define "
            f"(it defines {sorted(configured)})"
        )
    if store.revoked(session_id):
        raise DeviceUnavailableError(
            f"task {task_name} was not started: the session is ending, its devices are being "
            "driven to their safe state"
        )
    holders = store.holders(names)
    missing = [n for n, h in holders.items() if h is None]
    if missing:
        raise DeviceUnavailableError(
            f"task {task_name} needs device(s) {missing} but no live worker holds them: start "
            f"`{worker_command(app, names)}` (or run task threads in this process: "
            "WEBLAB_TASK_THREADS_PROCESS > 0 makes it hold the devices no worker holds)"
        )
    closed = sorted(n for n, h in holders.items() if h and h.get("closed"))
    if closed:
        raise DeviceUnavailableError(
            f"task {task_name} needs device(s) {closed} whose worker takes no new tasks (a "
            "`run-tasks` finishing its queue, or a worker stopping): start a long-running "
            f"worker, `{worker_command(app, names)}`"
        )
    workers = {h["worker"] for h in holders.values() if h}
    if len(workers) > 1:
        raise DeviceUnavailableError(
            f"task {task_name} needs devices {sorted(names)} held by different workers "
            f"{sorted(workers)}: one task runs in one process; start one worker with all of "
            f"them: `{worker_command(app, names)}`"
        )
    unsafe = {n: r for n in names if (r := store.last_safe(n)) and not r.get("ok")}
    if unsafe:
        details = "; ".join(f"{n}: {r.get('detail') or r}" for n, r in unsafe.items())
        raise DeviceUnavailableError(
            f"task {task_name} was not started: device(s) {sorted(unsafe)} did not reach their "
            f"safe state last time ({details}). Check the hardware (`labruntime device "
            "status`); the lab is ready again once a safe() succeeds (a worker restart does one)"
        )
    store.mark_used(session_id, names, used_ttl)
    return device_pool(names)
