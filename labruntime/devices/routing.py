"""Routing device tasks: a task with ``devices=[...]`` goes to the queue (pool)
``devices:<a+b>`` (names sorted); the process holding those devices takes from the pool of
every subset of its devices. :func:`worker_command` is the command line that starts such a
process, quoted by every message that asks an operator to start one.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["POOL_PREFIX", "device_pool", "pools_for", "worker_command"]

POOL_PREFIX = "devices:"
MAX_POOL_DEVICES = 4  # a holder serves every subset of its devices, up to this size


def device_pool(names: list[str] | tuple[str, ...]) -> str:
    """The queue of tasks needing exactly these devices: ``devices:board+led``."""
    return POOL_PREFIX + "+".join(sorted(set(names)))


def pools_for(names: list[str]) -> list[str]:
    """Every pool a holder of ``names`` serves (each non-empty subset, up to 4 devices)."""
    names = sorted(set(names))
    pools = []
    for size in range(1, min(len(names), MAX_POOL_DEVICES) + 1):
        pools += [device_pool(list(c)) for c in itertools.combinations(names, size)]
    return pools


def _app_reference(app: Flask) -> str:
    """What ``--app`` needs to find this app: its module name if importable, else its file."""
    from importlib.machinery import PathFinder

    name = app.import_name
    path = getattr(sys.modules.get(name), "__file__", None)
    top = name.split(".")[0]
    importable = name != "__main__" and PathFinder.find_spec(top, sys.path) is not None
    return name if importable or not path else path


def worker_command(app: Flask, names: list[str]) -> str:
    """The command line that starts a worker holding ``names`` for this app."""
    app_ref = os.environ.get("FLASK_APP") or _app_reference(app)
    devices = " ".join(f"--device {n}" for n in sorted(names))
    return f"labruntime --app {app_ref} loop {devices}"
