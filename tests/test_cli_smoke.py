"""CLI smoke tests: every command of ``labruntime`` and ``flask weblab`` with bad input.

Real subprocesses. Each bad input must end with a clear one-line ``Error: ...`` on stderr, a
non-zero exit and no traceback. Labs are small files written to the test's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labruntime.store.embedded import stop_embedded_redis

BIN = Path(sys.executable).parent
LABRUNTIME = str(BIN / "labruntime")
FLASK = str(BIN / "flask")
UNREACHABLE = "redis://127.0.0.1:1/0"

APP_COMMANDS = [
    ["fake", "new", "--dont-open-browser"],
    ["fake", "status"],
    ["fake", "dispose"],
    ["clean-expired-users"],
    ["run-tasks"],
    ["loop"],
    ["redis", "start"],
    ["redis", "status"],
    ["redis", "stop"],
]
IDS = [" ".join(c[:2]) for c in APP_COMMANDS]

LAB = """
from flask import Flask
from labruntime import WebLab

app = Flask(__name__, instance_path={instance!r})
app.config.update(SECRET_KEY="k" * 16, WEBLAB_USERNAME="u", WEBLAB_PASSWORD="p" * 16, {extra})
weblab = WebLab(app)


@weblab.initial_url
def initial_url():
    return "/"
"""


def write_lab(folder: Path, name: str, extra: str = "", body: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    text = body if body is not None else LAB.format(instance=str(folder / "inst"), extra=extra)
    path.write_text(textwrap.dedent(text))
    return path


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "SERVER_NAME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, no traceback, the last stderr line is one ``Error: ...`` line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), output
    message = lines[-1]
    for needle in needles:
        assert needle.lower() in message.lower(), (needle, message)
    return message


@pytest.fixture
def labs(tmp_path: Path) -> Path:
    write_lab(tmp_path, "plain", body="from flask import Flask\napp = Flask(__name__)\n")
    write_lab(tmp_path, "unreachable", extra=f"WEBLAB_REDIS_URL={UNREACHABLE!r}")
    write_lab(tmp_path, "nopassword", body=LAB.replace('WEBLAB_PASSWORD="p" * 16, ', "").format(
        instance=str(tmp_path / "inst"), extra=""))  # fmt: skip
    write_lab(tmp_path, "badtimeout", extra="WEBLAB_TIMEOUT='soon'")
    return tmp_path


def _both(command: list[str], app: str | None) -> list[list[str]]:
    with_app = ["--app", app] if app else []
    return [[LABRUNTIME, *with_app, *command], [FLASK, *with_app, "weblab", *command]]


@pytest.mark.slow
@pytest.mark.parametrize("command", APP_COMMANDS, ids=IDS)
def test_no_app_given(labs: Path, command: list[str]) -> None:
    empty = labs / "empty"
    empty.mkdir()
    labruntime_run = run([LABRUNTIME, *command], empty)
    assert_clean_error(labruntime_run, "--app")
    # `flask weblab` without an app: flask itself cannot list the group; still no traceback
    flask_run = run([FLASK, "weblab", *command], empty)
    assert flask_run.returncode != 0 and "Traceback" not in flask_run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", APP_COMMANDS, ids=IDS)
def test_app_without_weblab(labs: Path, command: list[str]) -> None:
    for args in _both(command, "plain"):
        assert_clean_error(run(args, labs), "init_app")


@pytest.mark.slow
@pytest.mark.parametrize("command", APP_COMMANDS[:6], ids=IDS[:6])
def test_redis_unreachable(labs: Path, command: list[str]) -> None:
    for args in _both(command, "unreachable"):
        result = run(args, labs)
        if command[:2] == ["fake", "new"]:
            # the cleaner thread `fake new` starts (see test_fake_new_runs_no_queued_task) may
            # log its own Redis warning after the error line: check the error is there
            assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1 and "unavailable" in errors[0], result.stderr
            continue
        message = assert_clean_error(result)
        assert "unavailable" in message.lower() or "redis" in message.lower(), message


@pytest.mark.slow
@pytest.mark.parametrize("command", APP_COMMANDS[6:], ids=IDS[6:])
def test_redis_commands_with_an_external_url(labs: Path, command: list[str]) -> None:
    for args in _both(command, "unreachable"):
        assert_clean_error(run(args, labs), "WEBLAB_REDIS_URL")


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["fake", "status"], ["fake", "dispose"], ["clean-expired-users"]]
)
@pytest.mark.parametrize("lab", ["nopassword", "badtimeout"])
def test_misconfigured_lab(labs: Path, command: list[str], lab: str) -> None:
    key = {"nopassword": "WEBLAB_PASSWORD", "badtimeout": "WEBLAB_TIMEOUT"}[lab]
    for args in _both(command, lab):
        assert_clean_error(run(args, labs), key)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["run-tasks"], ["loop"]])
def test_misconfigured_lab_worker_commands(labs: Path, command: list[str]) -> None:
    assert_clean_error(run([LABRUNTIME, "--app", "nopassword", *command], labs), "PASSWORD")


@pytest.mark.slow
@pytest.mark.parametrize("command", [["run-tasks"], ["loop"]])
def test_zero_threads(labs: Path, command: list[str]) -> None:
    assert_clean_error(run([LABRUNTIME, "--app", "unreachable", *command, "--threads", "0"], labs))


BAD_OPTIONS = [
    (["fake", "new", "--dont-open-browser", "--client-initial-data", "{bad"], "JSON"),
    (["fake", "new", "--dont-open-browser", "--client-initial-data", "[1]"], "object"),
    (["fake", "new", "--dont-open-browser", "--client-initial-data-file", "/nonexistent"], ""),
    (["fake", "new", "--dont-open-browser", "--assigned-time", "abc"], "assigned-time"),
    (["fake", "new", "--nonsense"], "nonsense"),
    (["loop", "--threads", "abc"], "threads"),
    (["run-tasks", "--stop-timeout", "x"], "stop-timeout"),
    (["no-such-command"], "no-such-command"),
]


@pytest.mark.slow
@pytest.mark.parametrize("command,needle", BAD_OPTIONS, ids=[" ".join(c) for c, _ in BAD_OPTIONS])
def test_bad_options(labs: Path, command: list[str], needle: str) -> None:
    for args in _both(command, "unreachable"):
        assert_clean_error(run(args, labs), needle)


@pytest.mark.slow
def test_bad_options_without_an_app(labs: Path) -> None:
    assert_clean_error(run([LABRUNTIME, "demo", "--port", "abc"], labs), "port")
    assert_clean_error(run([LABRUNTIME, "device", "check"], labs), "URL")
    assert_clean_error(run([LABRUNTIME, "device", "check", "nosuch://x"], labs), "scheme")
    assert_clean_error(run([LABRUNTIME, "sim", "arduino", "--nonsense"], labs), "nonsense")
    assert_clean_error(run([LABRUNTIME, "--app", "no_such_module", "fake", "status"], labs))


@pytest.mark.slow
def test_demo_port_out_of_range(labs: Path) -> None:
    instance = labs / "demo-instance"
    try:
        result = run(
            [LABRUNTIME, "demo", "--port", "99999", "--dont-open-browser", "--instance",
             str(instance)],
            labs,
        )  # fmt: skip
    finally:
        stop_embedded_redis(str(instance))
    assert_clean_error(result, "port")


@pytest.mark.slow
def test_fake_status_and_dispose_without_a_fake_session(tmp_path: Path, redis_url: str) -> None:
    write_lab(tmp_path, "lab", extra=f"WEBLAB_REDIS_URL={redis_url!r}, WEBLAB_REDIS_BASE='smk'")
    for command in (["fake", "status"], ["fake", "dispose"]):
        for args in _both(command, "lab"):
            assert_clean_error(run(args, tmp_path), "fake new")


TASK_LAB = """
import os
from flask import Flask
from labruntime import WebLab

app = Flask(__name__, instance_path={instance!r})
app.config.update(SECRET_KEY="k" * 16, WEBLAB_USERNAME="u", WEBLAB_PASSWORD="p" * 16,
                  WEBLAB_REDIS_URL={url!r}, WEBLAB_REDIS_BASE={base!r})
weblab = WebLab(app)


@weblab.initial_url
def initial_url():
    return "/"


@weblab.on_start
def on_start(client_data, server_data):
    import threading
    with open({threads!r}, "w") as out:
        out.write(" ".join(sorted(t.name for t in threading.enumerate())))


@weblab.task()
def touch_hardware(where):
    with open(where, "w") as out:
        out.write(str(os.getpid()))
"""


@pytest.mark.slow
def test_fake_new_runs_no_queued_task(tmp_path: Path, redis_url: str, redis_base: str) -> None:
    threads = tmp_path / "threads.txt"
    lab = TASK_LAB.format(
        instance=str(tmp_path / "inst"), url=redis_url, base=redis_base, threads=str(threads)
    )
    write_lab(tmp_path, "tasklab", body=lab)
    marker = tmp_path / "ran-in.txt"
    queue = (
        "import tasklab\n"
        "with tasklab.app.app_context():\n"
        f"    tasklab.touch_hardware.delay({str(marker)!r})\n"
    )
    queued = run([sys.executable, "-c", queue], tmp_path)
    assert queued.returncode == 0, queued.stderr
    started = run([LABRUNTIME, "--app", "tasklab", "fake", "new", "--dont-open-browser"], tmp_path)
    assert started.returncode == 0, started.stderr
    assert "open: http://" in started.stdout
    names = threads.read_text().split()
    assert names == ["MainThread"], f"threads started by a CLI command: {names}"
    assert not marker.exists(), "a CLI command ran a queued task"


@pytest.mark.slow
@pytest.mark.parametrize("command", [["clean-expired-users"], ["run-tasks"]])
def test_seed_top_level_flask_commands(tmp_path: Path, redis_url: str, command: list[str]) -> None:
    write_lab(tmp_path, "lab", extra=f"WEBLAB_REDIS_URL={redis_url!r}, WEBLAB_REDIS_BASE='smk2'")
    result = run([FLASK, "--app", "lab", *command], tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_loop_accepts_weblablib_reload_flags(tmp_path: Path) -> None:
    write_lab(tmp_path, "lab", extra=f"WEBLAB_REDIS_URL={UNREACHABLE!r}")
    result = run([FLASK, "--app", "lab", "weblab", "loop", "--no-reload"], tmp_path)
    assert "No such option" not in result.stderr, result.stderr
    assert "--reload" not in result.stderr
    reloading = run([FLASK, "--app", "lab", "weblab", "loop", "--reload"], tmp_path)
    assert "Warning: loop --reload is not supported (ignored)" in reloading.stderr
    assert_clean_error(reloading, "Redis")  # then the unreachable Redis, as without the flag


@pytest.mark.slow
def test_top_level_flask_commands_without_a_weblab(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    for command in (["clean-expired-users"], ["run-tasks"]):
        assert_clean_error(run([FLASK, "--app", "plain", *command], tmp_path), "not initialized")


@pytest.mark.slow
def test_flask_app_environment_variable_as_the_seed_uses_it(tmp_path: Path, redis_url: str) -> None:
    """`export FLASK_APP=laboratory.py` then the commands, as in the seed."""
    write_lab(tmp_path, "laboratory", extra=f"WEBLAB_REDIS_URL={redis_url!r}, "
              "WEBLAB_REDIS_BASE='smk3'")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SERVER_NAME"}
    env["FLASK_APP"] = "laboratory.py"
    for args in ([LABRUNTIME, "clean-expired-users"], [FLASK, "weblab", "clean-expired-users"],
                 [LABRUNTIME, "run-tasks"], [FLASK, "weblab", "run-tasks"]):  # fmt: skip
        result = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
