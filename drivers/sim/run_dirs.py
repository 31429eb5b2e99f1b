"""Private run folders of simulators, named after their owning process, and the cleanup of
the ones a killed process left behind (kill -9 runs no cleanup code).

``make_run_dir("labruntime-sim-")`` creates ``<tmp>/labruntime-sim-<pid>-<random>`` (mode 700)
after removing the folders of that prefix whose owner pid is gone: the next holder cleans
what is stale. Folders of live processes, and other users' (which cannot be removed from a
sticky /tmp anyway), are left alone.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

__all__ = ["make_run_dir", "remove_stale_run_dirs"]


def make_run_dir(prefix: str) -> str:
    """A new private folder ``<tmp>/<prefix><pid>-<random>``, stale ones removed first."""
    remove_stale_run_dirs(prefix)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def remove_stale_run_dirs(prefix: str) -> int:
    """Remove the ``<prefix><pid>-*`` folders of this user whose process is gone; how many."""
    removed = 0
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{prefix}*-*")):
        owner = os.path.basename(path)[len(prefix) :].split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        try:
            if os.lstat(path).st_uid != os.geteuid() or os.path.islink(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
