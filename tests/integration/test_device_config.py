"""WEBLAB_DEVICES loaded from a TOML file with app.config.from_file, checked at WebLab(app)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flask import Flask

from labruntime import InvalidConfigError, WebLab


def _lab_from_toml(tmp_path: Path, devices_toml: str) -> Flask:
    path = tmp_path / "devices.toml"
    path.write_text(devices_toml)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s" * 16, WEBLAB_USERNAME="rlms", WEBLAB_PASSWORD="p" * 16)
    app.config.from_file(str(path), load=tomllib.load, text=False)
    WebLab(app)
    return app


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('board = "nope:/dev/ttyACM0"', ["'board'", "unknown device scheme 'nope'"]),
        ('board = "stk500:"', ["'board'", "target after the scheme is empty"]),
        ('led = "gpio:17?safe=2"', ["'led'", "not a boolean"]),
        ('"board+led" = "sim:arduino"', ["'board+led'", "letters, digits"]),
        ('"my board" = "sim:arduino"', ["'my board'", "letters, digits"]),
        ('"board=x" = "sim:arduino"', ["'board=x'", "letters, digits"]),
    ],
)
def test_a_bad_device_in_a_toml_file_stops_the_lab_naming_it(tmp_path, line, words):
    with pytest.raises(InvalidConfigError) as info:
        _lab_from_toml(tmp_path, f"[WEBLAB_DEVICES]\n{line}\n")
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_good_device_names_are_kept(tmp_path):
    app = _lab_from_toml(
        tmp_path, '[WEBLAB_DEVICES]\nboard_1 = "sim:arduino"\nled-2 = "gpio:17?factory=mock"\n'
    )
    from labruntime.state import get_state

    assert dict(get_state(app).config.devices) == {
        "board_1": "sim:arduino",
        "led-2": "gpio:17?factory=mock",
    }
