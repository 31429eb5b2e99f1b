"""Issue 11, weak secrets: init_app refuses what anyone can guess or has read, naming the key."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from labruntime import InvalidConfigError, WebLab
from labruntime.config import MIN_SECRET_LENGTH

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-0f-the-lab-" + "x" * 20
GOOD_PASSWORD = "rlms-pa55word-" + "y" * 20


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("secrets", instance_path=str(tmp_path))
    app.config.update(
        SECRET_KEY=GOOD_KEY,
        WEBLAB_USERNAME="rlms",
        WEBLAB_PASSWORD=GOOD_PASSWORD,
        WEBLAB_REDIS_URL="redis://127.0.0.1:1/0",  # never reached: init_app does not connect
        WEBLAB_AUTOCLEAN_THREAD=False,
        WEBLAB_TASK_THREADS_PROCESS=0,
    )
    app.config.update(config)
    return app


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("SECRET_KEY", "dev", ["SECRET_KEY", "3 characters", "16"]),
        ("SECRET_KEY", " ", ["SECRET_KEY", "whitespace"]),
        ("SECRET_KEY", "\t \n", ["SECRET_KEY", "whitespace"]),
        ("SECRET_KEY", b"short-bytes", ["SECRET_KEY", "11 characters"]),
        ("SECRET_KEY", "change-me-to-a-long-random-string", ["SECRET_KEY", "example value"]),
        ("SECRET_KEY", "CHANGE-ME please, a long string", ["SECRET_KEY", "example value"]),
        ("SECRET_KEY", "a long random string, one per lab", ["SECRET_KEY", "example value"]),
        ("WEBLAB_PASSWORD", "secret", ["WEBLAB_PASSWORD", "6 characters"]),
        ("WEBLAB_PASSWORD", "   ", ["WEBLAB_PASSWORD", "whitespace"]),
        ("WEBLAB_PASSWORD", "change-me-rlms-password", ["WEBLAB_PASSWORD", "example value"]),
        ("WEBLAB_PASSWORD", GOOD_KEY, ["WEBLAB_PASSWORD", "same as SECRET_KEY"]),
    ],
)
def test_weak_secrets_are_refused_naming_the_key(tmp_path: Path, key, value, words) -> None:
    app = _app(tmp_path, **{key: value})
    with pytest.raises(InvalidConfigError) as info:
        WebLab(app)
    assert isinstance(info.value, ValueError)
    assert all(word in str(info.value) for word in words), str(info.value)
    assert "weblab" not in app.extensions  # nothing half-initialized


def test_short_secrets_are_only_a_warning_under_debug(tmp_path: Path, caplog) -> None:
    app = _app(tmp_path, SECRET_KEY="dev", WEBLAB_PASSWORD="pw", DEBUG=True)
    with caplog.at_level(logging.WARNING, logger="labruntime.config"):
        weblab = WebLab(app)
    text = caplog.text
    assert "SECRET_KEY is 3 characters" in text and "WEBLAB_PASSWORD is 2 characters" in text
    weblab.shutdown(app)
    published = _app(tmp_path, SECRET_KEY="change-me-to-a-long-random-string", DEBUG=True)
    with pytest.raises(InvalidConfigError, match="example value"):  # never under debug either
        WebLab(published)


def test_a_secret_of_sixteen_characters_is_accepted(tmp_path: Path) -> None:
    app = _app(tmp_path, SECRET_KEY="s" * MIN_SECRET_LENGTH, WEBLAB_PASSWORD="p" * 16)
    weblab = WebLab(app)
    weblab.shutdown(app)


def test_the_shipped_example_config_is_refused_until_its_secrets_are_changed(
    tmp_path: Path,
) -> None:
    example = ROOT / "config" / "lab.example.toml"
    app = Flask("example", instance_path=str(tmp_path))
    with example.open("rb") as fh:  # (Flask 2.2's from_file has no text=False)
        app.config.update(tomllib.load(fh))
    with pytest.raises(InvalidConfigError, match="example value"):
        WebLab(app)
