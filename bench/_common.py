"""What the benchmarks of bench/ share: the lab's config and views, the Redis, interleaved
runs, spreads, process CPU and memory, and the table every figure is printed in.

Imported on both sides of a side-by-side benchmark (this venv, and weblablib's venv where
labruntime is not installed), so labruntime is only imported inside the functions of the
"labruntime internals" section below: the one place that names labruntime's modules (fix the
module paths there when they move).
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from session_workload import PASSWORD, USER

HERE = Path(__file__).resolve().parent
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SKIP_WEBLABLIB = os.environ.get("BENCH_SKIP_WEBLABLIB", "") not in ("", "0")


def quick_or_full(quick: Any, full: Any) -> Any:
    """``quick`` with BENCH_QUICK=1 (a couple of minutes for all of bench/run), else ``full``."""
    return quick if QUICK else full


# -- labruntime internals: the only place bench/ names labruntime's modules -----------------
# (public names, WebLab, weblab.get_task, weblab.tasks, the CLI, labruntime.testing, are
# imported where used)
_EMBEDDED_MODULES = ("labruntime.store.embedded", "labruntime.embedded")


def embedded_module() -> Any:
    """The module of the embedded Redis (EmbeddedRedis, find_redis_server), wherever it is."""
    for name in _EMBEDDED_MODULES:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"none of {_EMBEDDED_MODULES}: update bench/_common.py")


def shutdown_lab(app: Any, timeout: float = 10.0) -> None:
    """Stop a labruntime lab's background threads (cleaner, task runners) in this process:
    ``WebLab.shutdown(app, timeout=...)``, or the private method it replaces."""
    weblab = app.extensions["bench_weblab"]  # set by lab_app.make_app
    shutdown = getattr(weblab, "shutdown", None)
    if shutdown is not None:
        shutdown(app, timeout=timeout)
    else:  # before WebLab.shutdown() landed
        weblab._stop_background(app, timeout)


def labruntime_cli(env: dict[str, str] | None = None) -> list[str]:
    """The ``labruntime`` command: this venv's console script, or ``BENCH_LABRUNTIME_CLI`` of
    ``env`` (default: os.environ), a command line (another checkout's CLI with PYTHONPATH)."""
    command = (os.environ if env is None else env).get("BENCH_LABRUNTIME_CLI")
    if command:
        return shlex.split(command)
    return [str(Path(sys.executable).with_name("labruntime"))]


# -- the lab ----------------------------------------------------------------------------------
def lab_config(redis_url: str, redis_base: str, **extra: Any) -> dict[str, Any]:
    """The Flask config of a benchmark lab (either library): no background thread."""
    return {
        "SECRET_KEY": "bench-secret-key-16",
        "WEBLAB_USERNAME": USER,
        "WEBLAB_PASSWORD": PASSWORD,
        "WEBLAB_REDIS_URL": redis_url,
        "WEBLAB_REDIS_BASE": redis_base,
        "WEBLAB_NO_THREAD": True,
        **extra,
    }


def add_session_views(app: Any, weblab: Any, requires_active: Any, weblab_user: Any) -> None:
    """The session workload's lab: ``/lab/read`` and ``/lab/write`` behind ``@requires_active``.

    The library's own ``requires_active`` and ``weblab_user`` are passed in, so labruntime
    and weblablib run the very same views.
    """

    @weblab.initial_url
    def initial_url() -> str:
        return "/lab/read"

    @weblab.on_start
    def on_start(client_data: dict, server_data: dict) -> dict:
        return {"visits": 0}

    @app.route("/lab/read")
    @requires_active
    def read() -> str:
        return f"hello {weblab_user.username}"

    @app.route("/lab/write")
    @requires_active
    def write() -> str:
        weblab_user.data["visits"] = weblab_user.data.get("visits", 0) + 1
        return f"visit {weblab_user.data['visits']}"


@contextmanager
def redis_url(private: bool = False) -> Iterator[str]:
    """``$WEBLAB_REDIS_URL``, or an embedded Redis in a temporary folder (stopped at the end).
    ``private=True``: always a new embedded server (for figures that read its CPU)."""
    url = os.environ.get("WEBLAB_REDIS_URL")
    if url and not private:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="lrbench") as tmp:
        server = embedded_module().EmbeddedRedis(Path(tmp) / "redis")
        try:
            yield server.ensure_running()
        finally:
            server.stop()


def redis_version() -> str:
    path = embedded_module().find_redis_server()
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# -- the sides: labruntime here, weblablib in its own venv, labruntime before ---------------
# A side is "labruntime" (this checkout), "weblablib" (its venv) or, with BENCH_BEFORE=<git
# revision>, "before": labruntime as it was at that revision (its labruntime/ and drivers/,
# exported from git to a temporary folder first on PYTHONPATH, run by this venv), so a closing
# note can show the figures before and after a change on the same machine in the same run.
BEFORE = os.environ.get("BENCH_BEFORE", "")

# the CLI of whichever labruntime is on the path (the console script of this venv is the
# current one's): labruntime.cli.main, a function (one module) or a module (a package)
_CLI_CODE = (
    "import importlib, sys; m = importlib.import_module('labruntime.cli'); "
    "main = getattr(m, 'main', None); main = main if callable(main) else "
    "importlib.import_module('labruntime.cli.main').main; sys.argv[0] = 'labruntime'; "
    "sys.exit(main())"
)


def library(side: str) -> str:
    """The library a side runs: ``weblablib`` or ``labruntime`` (for "before" too)."""
    return "weblablib" if side == "weblablib" else side if side == "bare" else "labruntime"


def redis_info(url: str, section: str) -> dict[str, Any]:
    """``INFO section`` of the Redis at ``url`` (one connection, closed)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return dict(client.info(section))
    finally:
        client.close()


def sides() -> list[str]:
    names = ["labruntime"]
    if BEFORE:
        names.append("before")
    if not SKIP_WEBLABLIB:
        names.append("weblablib")
    return names


def before_checkout() -> Path:
    """labruntime at BENCH_BEFORE, exported once to a temporary folder (kept between runs)."""
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{BEFORE}^{{commit}}"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    folder = Path(tempfile.gettempdir()) / f"labruntime-before-{sha[:12]}"
    if not (folder / "labruntime" / "__init__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "labruntime", "drivers"],
            cwd=root, capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    drivers = folder / "labruntime" / "drivers"
    if not drivers.exists() and (folder / "drivers").is_dir():
        drivers.symlink_to("../drivers")  # the committed symlink, if git archive left it out
    return folder


def python_path() -> str:
    """PYTHONPATH for a subprocess: bench/, then whatever was set."""
    return os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)


def side_environment(side: str) -> dict[str, str]:
    """The environment of a side's processes (bench/ on PYTHONPATH; "before": its checkout)."""
    env = {**os.environ, "PYTHONPATH": python_path()}
    if side == "before":
        env["PYTHONPATH"] = f"{before_checkout()}{os.pathsep}{env['PYTHONPATH']}"
        env["BENCH_LABRUNTIME_CLI"] = shlex.join([sys.executable, "-c", _CLI_CODE])
    return env


def side_python(side: str) -> str:
    if library(side) != "weblablib":
        return sys.executable
    from weblablib_env import weblablib_python

    return str(weblablib_python())


def run_side(side: str, script: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run ``bench/<script> --side <library> args`` with that side's interpreter and
    environment; return the JSON object it prints last."""
    command = [side_python(side), "-W", "ignore::DeprecationWarning", str(HERE / script)]
    command += ["--side", library(side), *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=HERE,
        env=side_environment(side), check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{script} --side {side} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interleave(
    run: Callable[[str, int], dict[str, Any]], rounds: int, names: list[str] | None = None
) -> dict[str, list[dict[str, float]]]:
    """Run ``run(side, round)`` for each side in turn (A B A B ...), ``rounds`` times; return
    each side's flattened figures, one dict per round."""
    names = names or sides()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names:
            results[name].append(flatten(run(name, number)))
    return results


def flatten(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix + key] = float(value)
    return flat


# -- spreads and the table --------------------------------------------------------------------
class Spread(NamedTuple):
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, digits: int) -> str:
        if self.n == 1 or self.low == self.high:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Row(NamedTuple):
    """One line of a table: the figure ``key`` (flattened), labelled; ``floor``: the key in
    the floors dict of what the machine does at best for it (None: no floor); ``compare``
    False: no ratio (a count that is neither better nor worse)."""

    key: str
    label: str
    higher_better: bool = False
    floor: str | None = None
    digits: int = 2
    compare: bool = True  # False: no ratio (a count that is neither better nor worse)


def print_table(
    title: str,
    rows: list[Row],
    results: dict[str, list[dict[str, float]]],
    floors: dict[str, float] | None = None,
) -> None:
    """One column per side (median [min-max] over rounds), the ratios, the floor, and each
    side's figure as a multiple of the floor.

    ratio: how many times better labruntime is than weblablib (> 1: better); "vs before"
    (with BENCH_BEFORE): how many times better than labruntime at that revision.
    """
    floors = floors or {}
    names = [name for name in ("labruntime", "before", "weblablib") if results.get(name)]
    rounds = max(len(results[name]) for name in names)
    print(title)
    width = max(len(row.label) for row in rows) + 1
    comparisons = [(other, label) for other, label in
                   (("weblablib", "ratio"), ("before", "vs before")) if other in names]  # fmt: skip
    header = f"{'':{width}}" + "".join(f" {_heading(name):>22}" for name in names)
    header += "".join(f" {label:>9}" for _, label in comparisons) + f" {'floor':>9}"
    header += "".join(f" {_short(name) + '/floor':>9}" for name in names)
    print(header)
    for row in rows:
        spreads = {name: _spread(results[name], row.key) for name in names}
        floor = floors.get(row.floor) if row.floor else None
        line = f"{row.label:{width}}"
        line += "".join(f" {_cell(spreads[name], row.digits):>22}" for name in names)
        for other, _ in comparisons:
            line += f" {_ratio(spreads['labruntime'], spreads[other], row):>9}"
        line += f" {_num(floor, row.digits):>9}"
        line += "".join(f" {_times(spreads[name], floor, row.higher_better):>9}" for name in names)
        print(line)
    print(
        f"(median [min-max] of {rounds} interleaved round(s); ratio > 1: labruntime better; "
        "x/floor: times the floor's cost)"
    )


def _heading(name: str) -> str:
    return f"before ({BEFORE[:12]})" if name == "before" else name


def _short(name: str) -> str:
    return {"labruntime": "lr", "weblablib": "wl", "before": "bef"}[name]


def _ratio(ours: Spread | None, other: Spread | None, row: Row) -> str:
    if not row.compare or not ours or not other or not ours.median or not other.median:
        return "-"
    value = ours.median / other.median if row.higher_better else other.median / ours.median
    return f"{value:.2f}x"


def _spread(results: list[dict[str, float]], key: str) -> Spread | None:
    values = [figures[key] for figures in results if key in figures]
    return Spread.of(values) if values else None


def _cell(spread: Spread | None, digits: int) -> str:
    return spread.text(digits) if spread else "-"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _times(spread: Spread | None, floor: float | None, higher_better: bool) -> str:
    if spread is None or not floor or not spread.median:
        return "-"
    return f"{(floor / spread.median if higher_better else spread.median / floor):.2f}"


def goal_line(label: str, value: float | None, goal: str, met: bool | None) -> str:
    verdict = "-" if met is None else ("met" if met else "NOT met")
    shown = "-" if value is None else f"{value:.2f}"
    return f"goal: {label} = {shown} (goal {goal}): {verdict}"


# -- the machine ------------------------------------------------------------------------------
def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cpus)"


@contextmanager
def bench_section(title: str) -> Iterator[None]:
    """Print the title and the machine's load before, and the load after."""
    mode = "quick (BENCH_QUICK=1)" if QUICK else "full"
    print(f"## {title} [{mode}]; at start: {load_text()}")
    began = time.monotonic()
    yield
    print(f"## at end: {load_text()}; took {time.monotonic() - began:.0f} s")


# -- processes: CPU and memory from /proc -----------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ms(pid: int) -> float:
    """CPU time of a process, ms: the sum over its live threads of the scheduler's run time
    (/proc/PID/task/*/schedstat, nanoseconds), so short windows are not rounded to clock
    ticks; a thread that ended is missed, so the larger of that and /proc/PID/stat's
    utime + stime (ticks, dead threads included) is taken. 0 if the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = (int(fields[11]) + int(fields[12])) * 1000 / _TICK
    run_ns = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            run_ns += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return max(ticks, run_ns / 1e6)


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                found.append(int(kid))
                todo.append(int(kid))
    return found


def memory_kb(pid: int) -> dict[str, float]:
    """RSS and PSS of a process, kB (smaps_rollup)."""
    values = {"rss_kb": 0.0, "pss_kb": 0.0}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[f"{name.lower()}_kb"] = float(rest.split()[0])
    return values
