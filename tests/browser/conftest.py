"""A real headless browser for the demo lab: Debian's chromium driven by playwright.

playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (install it with
``apt-get install chromium``). Without it, or without the ``playwright`` package, these tests
skip and say why. Screenshots go to ``artifacts/`` at the repository root (gitignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (created on demand)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A fresh chromium (its own user-data-dir) and one page; closed after the test."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "the playwright package is missing: pip install -e '.[browser]' (tools/test.sh "
            "does on x86_64 and aarch64; playwright has no wheel for a 32-bit Pi)"
        )
    profile = tmp_path / "chromium-profile"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 860},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)
