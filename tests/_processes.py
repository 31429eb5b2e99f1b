"""Ending the subprocesses a test started, bounded in time."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable


def stop_processes(
    processes: Iterable[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 15
) -> list[int]:
    """Send ``sig`` to every process still running, then wait ``timeout`` seconds for each to
    exit, killing the ones that do not. Returns the exit codes (negative: ended by a signal)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(sig)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait(5))
    return codes
