"""A third-party scheme from a real distribution that pip installs, used through the CLI.

The distribution is a hand-made wheel (a wheel is a zip with a .dist-info; no build tools
needed) with one module and an entry point in the ``labruntime.drivers`` group. pip installs it
into a temporary directory that the ``labruntime`` processes get on PYTHONPATH.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

LABRUNTIME = Path(sys.executable).with_name("labruntime")

DRIVER = '''"""lamp:NAME?level=0..100: a desk lamp whose safe state is off."""
from labruntime.drivers import Device
from labruntime.drivers.urls import opt_int, reject_unknown

GRAMMAR = "lamp:NAME?level=0..100"


class Lamp(Device):
    scheme = "lamp"

    def __init__(self, url, *, name, level):
        super().__init__(url, name=name)
        self.level = level

    def _drive_safe(self):
        self.level = 0
        return {"level": self.level}

    def _close(self):
        pass

    def _describe(self):
        return {"lamp": self.url.partition(":")[2].partition("?")[0]}


def validate(url):
    reject_unknown(url, {"level"}, GRAMMAR)
    opt_int(url, "level", 0, minimum=0, maximum=100, grammar=GRAMMAR)


def open_url(url, *, name=None):
    validate(url)
    lamp = Lamp(url, name=name, level=opt_int(url, "level", 0))
    lamp.safe()
    return lamp
'''


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(directory: Path) -> Path:
    """lamplab-1.0-py3-none-any.whl with lamplab_driver.py and its entry point."""
    info = "lamplab-1.0.dist-info"
    files = {
        "lamplab_driver.py": DRIVER.encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: lamplab\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[labruntime.drivers]\nlamp = lamplab_driver\n",
        f"{info}/top_level.txt": b"lamplab_driver\n",
    }
    record = [_record_line(name, data) for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = directory / "lamplab-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory into which pip installed the lamplab distribution."""
    root = tmp_path_factory.mktemp("plugin")
    target = root / "site"
    wheel = build_wheel(root)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        + ["--disable-pip-version-check", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pip.returncode == 0, pip.stderr
    assert (target / "lamplab-1.0.dist-info" / "entry_points.txt").exists()
    return target


def labruntime(site: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(LABRUNTIME)] if LABRUNTIME.exists() else [sys.executable, "-m", "labruntime.cli"]
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "LABRUNTIME_LOCK_DIR": str(tmp_path / "locks"),
    }
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )


def test_an_installed_distribution_adds_a_scheme_the_cli_opens(site: Path, tmp_path: Path) -> None:
    done = labruntime(site, tmp_path, "device", "check", "--json", "lamp:desk?level=80")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["device"]["lamp"] == "desk" and report["device"]["scheme"] == "lamp"
    assert report["safe"] == {"ok": True, "state": {"level": 0}, "detail": "safe state reached"}


def test_the_installed_scheme_is_listed_and_its_grammar_shown(site: Path, tmp_path: Path) -> None:
    unknown = labruntime(site, tmp_path, "device", "check", "toaster:1")
    assert unknown.returncode == 2
    assert "known schemes: command, gpio, lamp, serial, sim, stk500" in unknown.stderr
    for url, problem in [
        ("lamp:desk?colour=red", "unknown option 'colour'"),
        ("lamp:desk?level", "option 'level' has no value"),
        ("lamp:desk?level=120", "above 100"),
    ]:
        bad = labruntime(site, tmp_path, "device", "check", url)
        assert bad.returncode == 2, bad.stderr
        assert problem in bad.stderr and "Grammar: lamp:NAME?level=0..100" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_without_the_distribution_the_scheme_is_unknown(tmp_path: Path) -> None:
    done = labruntime(tmp_path, tmp_path, "device", "check", "lamp:desk")
    assert done.returncode == 2 and "unknown device scheme 'lamp'" in done.stderr
