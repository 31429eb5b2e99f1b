"""Logs an operator can read: labruntime's processes log INFO lines on stderr; no secret (the
Redis password, the RLMS password) reaches them, even through a Redis outage."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from labruntime.redact import SecretFilter, add_secret, mask_url, session_hash
from labruntime.store.embedded import find_redis_server
from tests._helpers import LABRUNTIME, wait_for, write_lab
from tests._processes import stop_processes

REDIS_PASSWORD = "Zq8-redis-pass-not-for-logs"
RLMS_PASSWORD = "Rl9-rlms-pass-not-for-logs-0123"


def test_session_hash_and_masked_url():
    assert session_hash("abc") == "sid:ba7816bf" and session_hash(None) == "-"
    assert mask_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_a_students_link_in_an_access_log_line_is_hashed():
    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '"GET /callback/%s HTTP/1.1" 302', None, None
    )
    record.args = ("I-4ZuBDmYVhVy19WH318vGaTA1a5UtqBC2qWB4paDyI",)
    SecretFilter().filter(record)
    line = record.getMessage()
    assert "I-4ZuBD" not in line
    assert f"/callback/{session_hash('I-4ZuBDmYVhVy19WH318vGaTA1a5UtqBC2qWB4paDyI')}" in line


def test_the_filter_masks_urls_secrets_and_tracebacks():
    add_secret("s3cret-value-123")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "to %s with %s", None, None)
    record.args = ("redis://user:pw9@h:1/0", "s3cret-value-123")
    try:
        raise ConnectionError("redis://:tb-pass@h:1 said s3cret-value-123")
    except ConnectionError:
        record.exc_info = sys.exc_info()
    SecretFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "pw9" not in text and "tb-pass" not in text and "s3cret-value-123" not in text, text
    assert "redis://user:***@h:1/0" in text


@pytest.mark.slow
def test_a_worker_logs_info_and_no_password_through_a_redis_outage(tmp_path: Path):
    sock = tmp_path / "r.sock"
    redis = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    lab = write_lab(
        tmp_path / "pwlab.py",
        f'WEBLAB_REDIS_URL="unix://:{REDIS_PASSWORD}@{sock}"',
        password=RLMS_PASSWORD,
        initial_url=False,
    )
    log = tmp_path / "worker.log"
    worker = None
    try:
        wait_for(sock.exists, 10, "the test's Redis socket")
        with log.open("w") as out:
            worker = subprocess.Popen(
                [LABRUNTIME, "--app", str(lab), "loop", "--threads", "2"],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: "SIGTERM to stop" in log.read_text(), 20, log.read_text)
        stop_processes([redis])  # the outage
        wait_for(lambda: "unavailable" in log.read_text(), 20, log.read_text)
    finally:
        stop_processes([p for p in (worker, redis) if p is not None])
    text = log.read_text()
    assert " INFO labruntime." in text, text  # an operator sees the worker's INFO lines
    assert REDIS_PASSWORD not in text and RLMS_PASSWORD not in text, text


@pytest.mark.slow
def test_flask_weblab_run_tasks_logs_info_too(tmp_path: Path, redis_url: str, redis_base: str):
    lab = write_lab(
        tmp_path / "infolab.py",
        f"WEBLAB_REDIS_URL={redis_url!r}, WEBLAB_REDIS_BASE={redis_base!r}, WEBLAB_NO_THREAD=True",
        password=RLMS_PASSWORD,
        initial_url=False,
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", str(lab), "weblab", "run-tasks"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert " INFO labruntime.tasks.worker: worker " in done.stderr, done.stderr
