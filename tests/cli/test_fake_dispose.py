"""``fake dispose`` of a session that already ended says so (exit 1), not a JSON
``Not found`` with exit 0; the first dispose prints the RLMS's reply."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

LABRUNTIME = str(Path(sys.executable).parent / "labruntime")


def test_fake_dispose_twice(tmp_path: Path, redis_url: str, redis_base: str):
    lab = tmp_path / "disposelab.py"
    lab.write_text(
        textwrap.dedent(f"""
        from flask import Flask
        from labruntime import WebLab
        app = Flask(__name__, instance_path={str(tmp_path / "inst")!r})
        app.config.update(SECRET_KEY="k9Fz2LqWm4Xv8RtY3PbN", WEBLAB_USERNAME="rlms",
                          WEBLAB_PASSWORD="Rl9-rlms-pass-0123456789",
                          WEBLAB_REDIS_URL={redis_url!r}, WEBLAB_REDIS_BASE={redis_base!r},
                          WEBLAB_NO_THREAD=True)
        weblab = WebLab(app)

        @weblab.initial_url
        def initial_url():
            return "/"
        """)
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LABRUNTIME, "--app", str(lab), *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert run("fake", "new", "--dont-open-browser").returncode == 0
    first = run("fake", "dispose")
    assert first.returncode == 0 and '"Deleted"' in first.stdout, first.stderr
    again = run("fake", "dispose")
    assert again.returncode == 1, again.stdout
    assert "had already ended" in again.stderr and "Not found" not in again.stdout
    assert "Traceback" not in again.stderr
