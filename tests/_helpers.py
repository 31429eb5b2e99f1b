"""What many tests need: loading a lab file as a module, waiting for a condition, the demo
lab on the test's Redis, and a minimal lab file for the CLI (run with :func:`run_labruntime`).

Tests import them as ``from tests._helpers import load_module, running_demo, wait_for``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

LABRUNTIME = str(Path(sys.executable).parent / "labruntime")


def load_module(path: Path, name: str | None = None, *, fresh: bool = False) -> ModuleType:
    """The Python file ``path`` as a module named ``name`` (default: its stem), loaded once
    and kept in ``sys.modules`` (``fresh=True``: loaded again, e.g. after its environment
    changed)."""
    name = name or path.stem
    if not fresh and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def wait_for(
    condition: Callable[[], T],
    timeout: float = 5.0,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.05,
) -> T:
    """Call ``condition()`` until it returns something true, and return that; fail the test
    naming ``what`` (a text, or a function giving one, e.g. a log) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"still waiting for {said} after {timeout:g} s")
        time.sleep(interval)


@contextmanager
def running_demo(tmp_path: Path, redis_url: str, redis_base: str, **config: Any) -> Iterator[Any]:
    """The demo lab's app (instance folder ``tmp_path/demo``) on the test's Redis, with
    ``config`` (``WEBLAB_*`` keys); its threads are shut down after the block, even when it
    fails."""
    from labruntime.demo import create_app
    from labruntime.state import get_state

    app = create_app(
        tmp_path / "demo", WEBLAB_REDIS_URL=redis_url, WEBLAB_REDIS_BASE=redis_base, **config
    )
    try:
        yield app
    finally:
        get_state(app).shutdown(timeout=10)


def write_lab(
    path: Path,
    config: str = "",
    *,
    password: str = "Rl9-rlms-pass-0123456789",
    initial_url: bool = True,
) -> Path:
    """Write a minimal lab file at ``path`` (instance folder ``inst`` beside it): a Flask app
    with WebLab, the RLMS's credentials ``rlms`` / ``password``, ``config`` (more
    ``app.config.update`` keywords, as Python source) and an ``initial_url`` of "/"."""
    extra = f", {config}" if config else ""
    text = f"""
        from flask import Flask
        from labruntime import WebLab
        app = Flask(__name__, instance_path={str(path.parent / "inst")!r})
        app.config.update(SECRET_KEY="k9Fz2LqWm4Xv8RtY3PbN", WEBLAB_USERNAME="rlms",
                          WEBLAB_PASSWORD={password!r}{extra})
        weblab = WebLab(app)
        """
    if initial_url:
        text += """
        @weblab.initial_url
        def initial_url():
            return "/"
        """
    path.write_text(textwrap.dedent(text))
    return path


def run_labruntime(lab: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``labruntime --app LAB ARGS...`` in the lab's folder, its output captured."""
    return subprocess.run(
        [LABRUNTIME, "--app", str(lab), *args],
        cwd=lab.parent, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def skip_unless_user_can_import(uid: int, gid: int, *modules: str) -> None:
    """Skip the calling test when user ``uid`` cannot import ``modules`` from this checkout.

    A second-user test runs this checkout's Python as another user (``setpriv``); a checkout
    inside a folder closed to other users (``mktemp -d`` makes 0700 folders) cannot be read by
    them, which says nothing about labruntime. Run the suite from a folder others may read to
    include these tests.
    """
    import pytest

    probe = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", sys.executable, "-c",
         "import " + ", ".join(modules)],
        capture_output=True, text=True, timeout=60, check=False, cwd="/",
    )  # fmt: skip
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"user {uid} cannot import this checkout ({last}): a parent folder is closed to "
            "other users; run the suite from a folder others may read to include this test"
        )
