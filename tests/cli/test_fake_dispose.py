"""``fake dispose`` of a session that already ended says so (exit 1), not a JSON
``Not found`` with exit 0; the first dispose prints the RLMS's reply."""

from __future__ import annotations

from pathlib import Path

from tests._helpers import run_labruntime, write_lab


def test_fake_dispose_twice(tmp_path: Path, redis_url: str, redis_base: str):
    lab = write_lab(
        tmp_path / "disposelab.py",
        f"WEBLAB_REDIS_URL={redis_url!r}, WEBLAB_REDIS_BASE={redis_base!r}, WEBLAB_NO_THREAD=True",
    )
    assert run_labruntime(lab, "fake", "new", "--dont-open-browser").returncode == 0
    first = run_labruntime(lab, "fake", "dispose")
    assert first.returncode == 0 and '"Deleted"' in first.stdout, first.stderr
    again = run_labruntime(lab, "fake", "dispose")
    assert again.returncode == 1, again.stdout
    assert "had already ended" in again.stderr and "Not found" not in again.stdout
    assert "Traceback" not in again.stderr
