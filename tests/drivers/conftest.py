"""Fixtures of the device-layer tests: a private lease directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test takes its device leases in its own directory (LABRUNTIME_LOCK_DIR)."""
    path = tmp_path / "locks"
    monkeypatch.setenv("LABRUNTIME_LOCK_DIR", str(path))
    return path
