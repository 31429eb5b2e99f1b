"""The layout rules of docs/architecture.md, checked on the source with ``ast``.

- ``drivers/`` (installed as ``labruntime.drivers``) never imports ``labruntime``, ``flask`` or
  ``redis``, and imports its own modules relatively only;
- inside ``labruntime/`` only the ``labruntime/store/`` package imports ``redis``;
- package boundaries: each part of ``labruntime`` imports only the parts below it
  (:data:`MAY_IMPORT`), e.g. ``store`` nothing but ``errors``; nothing imports the CLI (but
  ``init_app``, its ``weblab`` group), the pytest plugin or the demo;
- no import cycle among the modules of ``labruntime`` (every import counts: module level,
  inside functions and under ``TYPE_CHECKING``);
- package ``__init__.py`` files hold a docstring, not code (``labruntime/__init__.py``, the
  public API, and ``demo/``, the demo lab, excepted);
- no ``pickle`` anywhere, no ``print(`` outside the CLI, benchmarks and testing helpers;
- no module over 1,000 lines (modules are sized by concept; this only catches a runaway file).
"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labruntime"
DRIVERS = ROOT / "drivers"
STORE = PACKAGE / "store"
MAX_LINES = 1000

#: part of labruntime -> the parts it may import (besides itself). A part is a package
#: (``store``) or a top-level module (``state``); ``drivers`` is the device layer.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "redact": set(),  # session ids hashed, URL passwords masked: anyone may use it
    "config": {"errors"},
    "store": {"errors"},
    "sessions": {"errors", "config", "store", "state", "globals"},
    "devices": {"errors", "config", "store", "drivers", "globals"},
    "tasks": {"errors", "config", "store", "drivers", "sessions", "devices"},
    "state": {"errors", "config", "store", "sessions", "devices", "tasks"},
    "globals": {"errors", "state", "sessions", "tasks"},
    # cli: only init_app, to add the one ``weblab`` group (cli/weblab.py) to app.cli
    "extension": {"errors", "config", "state", "globals", "sessions", "tasks", "cli"},
    "testing": {"errors", "store"},
    "cli": {
        "errors",
        "state",
        "sessions",
        "tasks",
        "devices",
        "store",
        "drivers",
        "testing",
        "demo",
    },  # fmt: skip
    "demo": {"__init__", "errors", "store", "drivers", "testing"},
    "pytest_plugin": {"__init__", "state", "store", "drivers", "testing"},
    "__init__": {
        "errors",
        "extension",
        "globals",
        "sessions",
        "tasks",
        "devices",
    },  # fmt: skip
}
#: modules of a part that sit above the rest of it (they need the app's state): the only ones
#: of ``sessions`` that may import ``state`` or ``globals``, the only one of ``devices`` that may
#: import ``globals``
UPPER_MODULES = {
    "labruntime.sessions.access",
    "labruntime.sessions.views",
    "labruntime.sessions.monitor_view",
    "labruntime.devices.time_budget",
}


def python_files(*folders: Path) -> list[Path]:
    """The .py files under ``folders``, not looking into hidden folders (virtualenvs...)."""
    found = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            found += [Path(root) / name for name in files if name.endswith(".py")]
    return sorted(found)


def imported_modules(path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute-or-relative module name, relative level) of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def module_name(path: Path) -> str:
    """``labruntime/tasks/worker.py`` -> ``labruntime.tasks.worker``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_targets(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved; ``from X
    import Y`` names the module ``X.Y`` when that is a module of the repository."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for line, module, level in imported_modules(path):
        if level:
            base = package.split(".")
            base = base[: len(base) - (level - 1)]
            module = ".".join([*base, module] if module else base)
        found.append((line, module))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            for line, module in list(found):
                if line == node.lineno:
                    for alias in node.names:
                        sub = f"{module}.{alias.name}"
                        if _is_module(sub):
                            found.append((line, sub))
    return found


def _is_module(name: str) -> bool:
    if not name.startswith("labruntime."):
        return False
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def part_of(module: str) -> str | None:
    """The part of labruntime a module belongs to (``labruntime.tasks.worker`` -> ``tasks``),
    ``__init__`` for the package itself, None outside labruntime."""
    if module == "labruntime":
        return "__init__"
    if not module.startswith("labruntime."):
        return None
    return module.split(".")[1]


def labruntime_modules() -> list[Path]:
    """The modules of labruntime/ (not the drivers symlink)."""
    return [p for p in python_files(PACKAGE) if "drivers" not in p.relative_to(PACKAGE).parts]


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported labruntime module: line}, drivers left out."""
    graph: dict[str, dict[str, int]] = {}
    for path in labruntime_modules():
        edges = graph.setdefault(module_name(path), {})
        for line, target in import_targets(path):
            if part_of(target) not in (None, "drivers") and target != module_name(path):
                edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_sources_are_there() -> None:
    assert (PACKAGE / "__init__.py").is_file() and (DRIVERS / "__init__.py").is_file()
    assert len(python_files(PACKAGE, DRIVERS)) > 3


def test_drivers_import_neither_labruntime_nor_flask_nor_redis() -> None:
    bad = [
        f"{rel(path)}:{line} imports {name}"
        for path in python_files(DRIVERS)
        for line, name, level in imported_modules(path)
        if level == 0 and top(name) in {"labruntime", "flask", "redis", "drivers", "werkzeug"}
    ]
    assert not bad, "drivers/ must not depend on the session layer:\n" + "\n".join(bad)


def test_drivers_import_each_other_relatively() -> None:
    # `import serial` is pyserial: the serial: scheme's module (drivers/serial.py) shares its name
    siblings = {p.stem for p in DRIVERS.glob("*.py")} - {"__init__", "serial"}
    bad = [
        f"{rel(path)}:{line} imports {name} absolutely (use `from .{name} import ...`)"
        for path in python_files(DRIVERS)
        for line, name, level in imported_modules(path)
        if level == 0 and top(name) in siblings - set(sys.stdlib_module_names)
    ]
    assert not bad, "\n".join(bad)


def test_only_the_store_imports_redis() -> None:
    bad = [
        f"{rel(path)}:{line} imports {name}"
        for path in python_files(PACKAGE)
        if STORE not in path.parents
        for line, name, level in imported_modules(path)
        if level == 0 and top(name) == "redis"
    ]
    assert not bad, "only labruntime/store/ may talk to Redis:\n" + "\n".join(bad)


def test_no_pickle_anywhere() -> None:
    folders = [PACKAGE, DRIVERS, ROOT / "tests", ROOT / "bench", ROOT / "hil_tests"]
    bad = [
        f"{rel(path)}:{line} imports {name}"
        for path in python_files(*(f for f in folders if f.is_dir()))
        for line, name, level in imported_modules(path)
        if level == 0 and top(name) in {"pickle", "cPickle", "dill", "cloudpickle", "shelve"}
    ]
    assert not bad, "JSON, never pickle:\n" + "\n".join(bad)


def _prints(path: Path) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]


def test_no_print_outside_the_cli() -> None:
    allowed = {"testing.py"}
    bad = [
        f"{rel(path)}:{line}"
        for path in python_files(PACKAGE, DRIVERS)
        if "cli" not in path.relative_to(ROOT).parts and path.name not in allowed
        for line in _prints(path)
    ]
    assert not bad, "use logging.getLogger(__name__), not print():\n" + "\n".join(bad)


@pytest.mark.parametrize("path", python_files(PACKAGE, DRIVERS), ids=rel)
def test_modules_stay_small(path: Path) -> None:
    total = path.read_text().count("\n")
    assert total <= MAX_LINES, f"{rel(path)} has {total} lines: does it hold one concept?"


def test_every_part_is_in_the_rules() -> None:
    parts = {part_of(module_name(path)) for path in labruntime_modules()}
    assert parts <= set(MAY_IMPORT), f"add {sorted(parts - set(MAY_IMPORT))} to MAY_IMPORT"


def test_parts_import_only_the_parts_below_them() -> None:
    bad = []
    for module, edges in import_graph().items():
        part = part_of(module)
        for target, line in edges.items():
            other = part_of(target)
            if other == part or other is None or other == "redact":  # base of everything
                continue
            allowed = MAY_IMPORT[part or ""]
            upper = other in {"state", "globals"} and part in {"sessions", "devices"}
            if other not in allowed or (upper and module not in UPPER_MODULES):
                bad.append(f"{module} (line {line}) imports {target}")
    assert not bad, "imports across the layout's boundaries:\n" + "\n".join(bad)


def test_drivers_are_reached_only_through_labruntime_drivers() -> None:
    bad = [
        f"{rel(path)}:{line} imports {target}"
        for path in labruntime_modules()
        for line, target in import_targets(path)
        if top(target) == "drivers"
    ]
    assert not bad, "import the device layer as labruntime.drivers:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_package_inits_hold_a_docstring_only() -> None:
    bad = []
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name in ("drivers", "demo"):
            continue
        body = ast.parse(init.read_text()).body
        if not body or not (
            isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
        ):
            bad.append(f"{rel(init)} has no docstring")
        elif len(body) > 1:
            bad.append(f"{rel(init)} holds code: move it to a module of the package")
    assert not bad, "\n".join(bad)


def test_the_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert "labruntime demo" in blocks[0]
    assert blocks[1].strip() == "bash tools/test.sh"
    assert (ROOT / "tools" / "test.sh").is_file()


def test_the_readme_documents_every_configuration_key() -> None:
    from labruntime.config import KNOWN_KEYS

    readme = (ROOT / "README.md").read_text()
    missing = sorted(key for key in KNOWN_KEYS if f"`{key}`" not in readme)
    assert not missing, f"README.md's configuration table lacks {missing}"


def test_the_checks_see_violations(tmp_path: Path) -> None:
    """The helpers find what the rules forbid (so the tests above can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Doc\nstring."""\nimport redis\nfrom flask import Flask\nfrom .x import y\n'
        "import pickle  # comment\n\n# only a comment\nprint('x')\n"
    )
    names = [(name, level) for _, name, level in imported_modules(sample)]
    assert names == [("redis", 0), ("flask", 0), ("x", 1), ("pickle", 0)]
    assert _prints(sample) == [9]
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []
    assert part_of("labruntime.tasks.worker") == "tasks" and part_of("labruntime") == "__init__"
    worker = PACKAGE / "tasks" / "worker.py"
    assert module_name(worker) == "labruntime.tasks.worker"
    assert any(target == "labruntime.tasks.runner" for _, target in import_targets(worker))
