"""The predecessor library in its own virtual environment, for side-by-side benchmarks.

weblablib 0.5.9 (PyPI) does not import on Flask 3, so it lives in ``bench/.weblablib-venv``
with Flask < 3, created on first use (``python bench/weblablib_env.py`` creates it alone).
:func:`run_weblablib` runs a script of ``bench/`` with that interpreter against the Redis URL
given and returns the JSON object the script prints last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".weblablib-venv"
REQUIREMENTS = ["weblablib==0.5.9", "flask>=2.2,<3", "redis>=4", "gunicorn"]


def weblablib_python() -> Path:
    """The venv's interpreter, creating the venv the first time."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    if python.exists() and marker.exists() and marker.read_text() == " ".join(REQUIREMENTS):
        return python
    print(f"creating {VENV} with {' '.join(REQUIREMENTS)} ...", file=sys.stderr)
    if not python.exists():
        venv.EnvBuilder(with_pip=True, symlinks=True).create(VENV)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
    )
    subprocess.run([str(python), "-c", "import weblablib"], check=True)
    marker.write_text(" ".join(REQUIREMENTS))
    return python


def run_weblablib(script: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``bench/<script>`` under weblablib's venv; return the last JSON line it prints."""
    return _run([str(HERE / script), *args], script, timeout)


def run_weblablib_code(source: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run Python ``source`` under weblablib's venv (cwd and sys.path: bench/, so it can
    ``from weblablib_lab import make_app``); return the last JSON line it prints."""
    return _run(["-c", source, *args], "code", timeout)


def _run(arguments: list[str], what: str, timeout: float) -> dict[str, Any]:
    command = [str(weblablib_python()), "-W", "ignore::DeprecationWarning", *arguments]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=HERE, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed under weblablib ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(weblablib_python())
