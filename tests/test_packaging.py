"""Packaging: drivers/ ships as labruntime.drivers (wheel and editable), never as ``drivers``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", "build", "dist", "instance", "*.egg-info", "__pycache__", ".*cache")
SKIP += ("bench", "hil_tests", "artifacts", "*.sock")

PROBE = """
import importlib.util, json
import labruntime, labruntime.drivers as drivers
from labruntime.drivers import open_device
with open_device("serial:loop://") as dev:
    dev.write(b"ping\\n")
    line = dev.readline(timeout=1).decode()
print(json.dumps({
    "labruntime": labruntime.__file__,
    "drivers": drivers.__file__,
    "top_level_drivers": importlib.util.find_spec("drivers") is not None,
    "line": line,
}))
"""


def probe(python: str, cwd: Path, env_extra: dict[str, str] | None = None) -> dict:
    env = {"PATH": "/usr/bin:/bin", "LABRUNTIME_LOCK_DIR": str(cwd / "locks")}
    env.update(env_extra or {})
    out = subprocess.run(
        [python, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_wheel_maps_drivers_under_labruntime(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    source = tmp_path / "source"  # pip builds in the source tree: keep ours clean of build/
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("labruntime-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"labruntime", wheel_name_info(wheel)}
    for module in (ROOT / "drivers").glob("*.py"):
        assert f"labruntime/drivers/{module.name}" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    # dependencies (flask, pyserial...) come from the shared environment, after the venv's own
    # site-packages; a plain path line does not run that environment's editable-install hook
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "zz_shared_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    found = probe(python, tmp_path)
    assert found["drivers"] == str(Path(site, "labruntime", "drivers", "__init__.py"))
    assert found["labruntime"].startswith(site)
    assert found["top_level_drivers"] is False
    assert found["line"] == "ping\n"


def wheel_name_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def test_editable_install_maps_the_source_folder(tmp_path: Path) -> None:
    found = probe(sys.executable, tmp_path)
    # reached through the committed symlink labruntime/drivers -> ../drivers: the same files
    assert Path(found["drivers"]).resolve() == ROOT / "drivers" / "__init__.py"
    assert found["labruntime"] == str(ROOT / "labruntime" / "__init__.py")
    assert found["top_level_drivers"] is False
    assert found["line"] == "ping\n"


NAMES_PROBE = """
import json, sys
import labruntime
names = list(labruntime.__all__)
missing = sorted(set(names) - set(dir(labruntime)))
found = {}
for name in names:
    scope = {}
    exec(f"from labruntime import {name}", scope)
    found[name] = getattr(scope[name], "__module__", None) or type(scope[name]).__module__
print(json.dumps({"names": names, "missing_from_dir": missing, "found": found,
                  "flask": "flask" in sys.modules}))
"""


def test_every_public_name_imports_from_the_lazy_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", NAMES_PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert len(seen["names"]) == len(set(seen["names"])) >= 30
    assert seen["missing_from_dir"] == []
    assert set(seen["found"]) == set(seen["names"])
    assert seen["found"]["WebLab"] == "labruntime.extension"
    assert seen["found"]["TimeoutError"] == "labruntime.errors"  # not the builtin
    assert seen["flask"]  # WebLab needs flask: loaded once it was asked for


def test_an_unknown_name_is_an_attribute_error() -> None:
    import labruntime

    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        labruntime.NoSuchName  # noqa: B018
    with pytest.raises(ImportError, match="NoSuchName"):
        exec("from labruntime import NoSuchName", {})
