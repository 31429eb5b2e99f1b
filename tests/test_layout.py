"""The dependency rules of DESIGN.md, checked on the source with ``ast``.

- ``drivers/`` (installed as ``labruntime.drivers``) never imports ``labruntime``, ``flask`` or
  ``redis``, and imports its own modules relatively only;
- inside ``labruntime/`` only the ``labruntime/store/`` package imports ``redis``;
- no ``pickle`` anywhere, no ``print(`` outside the CLI, benchmarks and testing helpers;
- modules stay small: at most 400 lines of code (docstrings, comments and blank lines not
  counted) and 600 lines in all.
"""

from __future__ import annotations

import ast
import io
import os
import re
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "labruntime"
DRIVERS = ROOT / "drivers"
STORE = PACKAGE / "store"
MAX_CODE_LINES = 400
MAX_LINES = 600


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


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            value = getattr(first, "value", None)
            if isinstance(first, ast.Expr) and isinstance(value, ast.Constant):
                if isinstance(value.value, str):
                    docstrings.update(range(first.lineno, (first.end_lineno or 0) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in skip or tok.type == tokenize.ENDMARKER:
            continue
        lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docstrings)
    return len(lines)


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
        if not path.name.startswith("cli") and path.name not in allowed
        for line in _prints(path)
    ]
    assert not bad, "use logging.getLogger(__name__), not print():\n" + "\n".join(bad)


@pytest.mark.parametrize("path", python_files(PACKAGE, DRIVERS), ids=rel)
def test_modules_stay_small(path: Path) -> None:
    source = path.read_text()
    total = source.count("\n")
    code = code_lines(source)
    assert code <= MAX_CODE_LINES, f"{rel(path)} has {code} lines of code: split it"
    assert total <= MAX_LINES, f"{rel(path)} has {total} lines: split it"


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
    assert code_lines(sample.read_text()) == 5
