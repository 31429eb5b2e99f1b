"""The HIL plugin's options are namespaced (``--lr-*``): it loads in every pytest run (entry
point), next to plugins that have a ``--device`` of their own (pytest-playwright's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OTHER_PLUGIN = """
def pytest_addoption(parser):
    parser.addoption("--device", default=None, help="another plugin's device (a browser's)")
"""

TEST = """
def test_both(hil_device_map, pytestconfig):
    assert pytestconfig.getoption("--device") == "Pixel 5"
    assert dict(hil_device_map) == {"led": "gpio:17?factory=mock"}
"""


def test_the_plugin_loads_next_to_another_device_option(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(OTHER_PLUGIN)
    (tmp_path / "test_x.py").write_text(TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", "Pixel 5",
         "--lr-device", "led=gpio:17?factory=mock", "test_x.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
