"""kill -9 of a process holding a sim:arduino leaves its run folder; the next one cleans it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from labruntime.drivers.sim.arduino import SimulatedArduino

SIM = """
import os, sys
from labruntime.drivers.sim.arduino import SimulatedArduino
sim = SimulatedArduino(baudrate=115200)
print(os.path.dirname(sim.start()), flush=True)
sys.stdin.read()
"""


def test_a_killed_holders_simulator_folder_is_removed_by_the_next_one() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        folder = proc.stdout.readline().strip()
        assert os.path.isdir(folder) and f"-{proc.pid}-" in folder
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert os.path.isdir(folder)  # kill -9: nothing cleaned up
        with SimulatedArduino(baudrate=115200) as sim:
            assert not os.path.exists(folder)  # the next simulator removed the stale one
            assert os.path.isdir(os.path.dirname(sim.tty_path))  # its own is there
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
