"""README.md's code blocks and commands, run as written: extracted from the Markdown, never
retyped (config/README.md has its own: tests/test_config_readme.py).

Each block runs with bash (Python blocks with Python) from a temporary folder that holds a
``.venv`` standing in for the one the README creates (a link to this checkout's venv, which
is installed) and links to the files the commands name (``labruntime/``), with ``HOME`` in the
temporary folder (the demo keeps its data there). What cannot run here, and why:

- ``python3 -m venv`` and ``pip install``: build a venv from the network; the stand-in is
  the tests' venv, already installed (the calls are recorded and checked);
- ``bash tools/test.sh``: it is the whole suite, this test included;
- the weblablib import table: two columns side by side, not a program;
- the fragments of "Devices in a lab" (they name ``/dev/arduino-uno`` and a lab's ``weblab``)
  and the device worker commands (they need that lab and its board): compiled, not run;
  tests/cli/ runs the same commands on simulated boards;
- the hardware-in-the-loop block: it needs the rig.

Long-running commands are run until they have shown what the README says, then stopped as it
says (Ctrl-C: SIGINT): the demo (its link opened as a student) and ``flask run``. Ports are
free ones, given through the variables the commands read (LABRUNTIME_DEMO_PORT,
FLASK_RUN_PORT) so the text stays as written.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests._helpers import wait_for
from tests._processes import stop_processes

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def blocks(language: str) -> list[str]:
    """The fenced blocks of ``language`` at the start of a line, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.DOTALL | re.MULTILINE)


def block_with(language: str, text: str) -> str:
    found = [b for b in blocks(language) if text in b]
    assert len(found) == 1, f"README: one ```{language} block with {text!r}, found {len(found)}"
    return found[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """The reader's folder: a .venv (the tests' one) and the checkout's files it names."""
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "bin").symlink_to(VENV_BIN)
    (tmp_path / "labruntime").symlink_to(ROOT / "labruntime")
    (tmp_path / "home").mkdir()
    return tmp_path


def _env(here: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "VIRTUAL_ENV")}
    env.update(HOME=str(here / "home"), BROWSER="true", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


STUBS = """
not_run() { printf '%s\\n' "$*" >> not-run.log; }
python3() {
    if [ "${1:-} ${2:-}" = "-m venv" ]; then not_run python3 "$@"; else command python3 "$@"; fi
}
"""


def _bash(here: Path, script: str, env: dict[str, str], **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", "-c", STUBS + "set -e\n" + script],
        cwd=here, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, **kw,
    )  # fmt: skip


def _browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


def _stop(process: subprocess.Popen[str], output: list[str]) -> None:
    """Stop the script (Ctrl-C) and add the rest of what it printed to ``output``."""
    stop_processes([process], signal.SIGINT, timeout=30)
    assert process.stdout is not None
    output.append(process.stdout.read())
    process.stdout.close()


def _until_link(process: subprocess.Popen[str], output: list[str], port: int) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        found = re.search(r"http://\S+/callback/\S+", line)
        if found:
            return re.sub(r"^http://[^/]+", f"http://127.0.0.1:{port}", found.group(0))
    raise AssertionError("no link printed:\n" + "".join(output))


def test_every_block_is_run_or_left_out_for_a_stated_reason():
    bash = blocks("bash")
    assert "labruntime demo" in bash[0] and "tools/test.sh" in bash[1]
    assert any("fake new" in b for b in bash) and any("sim arduino" in b for b in bash)
    python = blocks("python")
    assert python[0].startswith("# laboratory.py") and "FakeRLMS" in python[1]
    for fragment in python[2:]:
        if not fragment.startswith("# before"):  # the import table: two columns
            compile(fragment, "README.md", "exec")


@pytest.mark.slow
def test_the_demo_command_runs_as_written(here: Path):
    block = blocks("bash")[0]
    block = block.replace(".venv/bin/pip install -e .", "not_run pip install -e .")
    port = _free_port()
    process = _bash(here, block, _env(here, LABRUNTIME_DEMO_PORT=str(port)))
    output: list[str] = []
    try:
        link = _until_link(process, output, port)

        def page() -> str | None:
            try:
                with _browser().open(link, timeout=10) as reply:
                    return reply.read().decode()
            except OSError:
                return None

        body = wait_for(page, 30, lambda: "the demo's page:\n" + "".join(output))
        assert "Demo Student" in body
    finally:
        _stop(process, output)
    text = "".join(output)
    assert "labruntime demo: stopped" in text and "Traceback" not in text, text
    assert "pip install -e ." in (here / "not-run.log").read_text()


@pytest.mark.slow
def test_the_minimal_lab_and_its_commands_run_as_written(here: Path):
    (here / "laboratory.py").write_text(block_with("python", "# laboratory.py"))
    test_block = block_with("python", "FakeRLMS")
    (here / "test_lab.py").write_text("from laboratory import app\n" + test_block)
    port = _free_port()
    env = _env(here, FLASK_RUN_PORT=str(port))
    commands = block_with("bash", "fake new")
    process = _bash(here, commands, env)
    output: list[str] = []
    try:
        link = _until_link(process, output, port)
        assert process.stdout is not None
        for line in process.stdout:  # fake status, then flask run
            output.append(line)
            if "Running on" in line:
                break
        with _browser().open(link, timeout=30) as reply:
            body = reply.read().decode()
        assert "Hello john.smith" in body and "s left" in body, body
    finally:
        _stop(process, output)
    text = "".join(output)
    assert "Should finish: " in text and "Traceback" not in text, text
    tested = subprocess.run(  # the README's test, with the README's lab
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_lab.py"],
        cwd=here, env={**env, "LAB_SECRET_KEY": "k" * 8 + "Fz2LqWm4Xv8RtY3P",
                       "LAB_RLMS_PASSWORD": "Rl9-rlms-pass-0123456789"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    subprocess.run(
        [str(VENV_BIN / "labruntime"), "--app", "laboratory", "redis", "stop"],
        cwd=here, env={**env, "LAB_SECRET_KEY": "x" * 32, "LAB_RLMS_PASSWORD": "y" * 24},
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("avrdude") is None, reason="avrdude is not installed")
def test_try_it_without_hardware_runs_as_written(here: Path):
    block = block_with("bash", "sim arduino")
    done = subprocess.run(
        ["bash", "-c", "set -e\n" + block], cwd=here, env=_env(here),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "contact: ok" in output and "signature: 1e950f" in output
    assert "no answer: exit 1" in output and "no answer from the bootloader" in output
    assert "programmed" in output and "verified" in output
    assert "flash verified" in output  # avrdude, through the simulator's tty
    assert "simulated board stopped" in output, output  # `kill $SIM` stopped it
