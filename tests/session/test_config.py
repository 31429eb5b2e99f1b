"""Configuration: every key validated at init_app, before anything is registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from labruntime import AlreadyInitializedError, InvalidConfigError, WebLab
from labruntime.config import load_config

BASE = {"SECRET_KEY": "k" * 16, "WEBLAB_USERNAME": "u", "WEBLAB_PASSWORD": "p" * 16}
QUIET = {"WEBLAB_AUTOCLEAN_THREAD": False, "WEBLAB_TASK_THREADS_PROCESS": 0}


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("WEBLAB_USERNAME", None, "Missing"),
        ("WEBLAB_USERNAME", "", "non-empty"),
        ("WEBLAB_PASSWORD", None, "Missing"),
        ("WEBLAB_PASSWORD", 1234, "non-empty string"),
        ("SECRET_KEY", 1234, "SECRET_KEY"),  # missing: refused at the first student
        ("WEBLAB_TIMEOUT", "soon", "number of seconds"),
        ("WEBLAB_TIMEOUT", True, "number of seconds"),
        ("WEBLAB_POLL_INTERVAL", -1, "seconds >= 0"),
        ("WEBLAB_CLEANER_INTERVAL", -1, "greater than 0"),
        ("WEBLAB_EXPIRED_USERS_TIMEOUT", "nan", "number of seconds"),
        ("WEBLAB_DISPOSE_TIMEOUT", 0, "greater than 0"),
        ("WEBLAB_AUTOPOLL", "maybe", "True or False"),
        ("WEBLAB_AUTOCLEAN_THREAD", 3, "True or False"),
        ("WEBLAB_TASK_THREADS_PROCESS", -1, "whole number"),
        ("WEBLAB_TASK_THREADS_PROCESS", 1.5, "whole number"),
        ("WEBLAB_SCHEME", "ftp", "'http' or 'https'"),
        ("WEBLAB_BASE_URL", "lab1", "starting with '/'"),
        ("WEBLAB_CALLBACK_URL", "callback", "starting with '/'"),
        ("WEBLAB_CALLBACK_URL", "", "Empty URL"),
        ("WEBLAB_CALLBACK_URL", None, "Empty URL"),
        ("WEBLAB_REDIS_URL", "localhost:6379", "redis://"),
        ("WEBLAB_REDIS_BASE", "my lab", "without spaces"),
        ("WEBLAB_DEVICES", ["arduino"], "dict of device name"),
        ("WEBLAB_DEVICES", {"arduino": 3}, "dict of device name"),
    ],
)
def test_bad_values_name_key_value_and_expectation(key, value, expected):
    app = Flask("badlab")
    app.config.update(BASE)
    app.config[key] = value
    with pytest.raises(InvalidConfigError) as info:
        WebLab(app)
    message = str(info.value)
    assert key in message and expected in message
    if value not in (None, ""):
        assert repr(value) in message
    assert isinstance(info.value, ValueError)
    assert "weblab" not in app.extensions
    assert not [r for r in app.url_map.iter_rules() if "weblab" in r.endpoint]


def test_defaults():
    config = load_config(BASE)
    assert (config.timeout, config.poll_interval, config.cleaner_interval) == (15, 5, 5)
    assert config.autopoll is True and config.expired_users_timeout == 3600
    assert config.callback_url == "/callback" and config.base_url == ""
    assert config.redis_base == "lab" and config.redis_url is None
    assert config.dispose_timeout == 60 and config.devices == {}
    assert config.task_threads_process == 3


@pytest.mark.parametrize(
    "raw,parsed", [("False", False), ("false", False), ("0", False), ("True", True), (1, True)]
)
def test_boolean_strings(raw, parsed):
    assert load_config({**BASE, "WEBLAB_AUTOPOLL": raw}).autopoll is parsed


def test_numbers_from_strings_and_disabled_timeout():
    config = load_config({**BASE, "WEBLAB_TIMEOUT": "-1", "WEBLAB_TASK_THREADS_PROCESS": "2"})
    assert config.timeout == -1 and config.task_threads_process == 2


def test_base_url_alias_and_constructor_precedence():
    assert load_config({**BASE, "WEBLAB_BASE": "/lab1/"}).base_url == "/lab1"
    assert load_config({**BASE, "WEBLAB_BASE_URL": "/a"}, base_url="/b").base_url == "/b"
    config = load_config({**BASE, "WEBLAB_BASE_URL": "/a"})
    assert config.callback_url == "/a/callback"
    assert load_config(BASE, callback_url="/cb").callback_url == "/cb"


def test_devices_accepted():
    devices = {"arduino": "sim:arduino?baud=115200", "led": "gpio:17?safe=0&factory=mock"}
    assert load_config({**BASE, "WEBLAB_DEVICES": devices}).devices == devices


@pytest.mark.parametrize(
    ("url", "words"),
    [("nosuch:thing", ["'board'", "nosuch"]), ("gpio:17?safe=maybe", ["'board'", "safe"])],
)
def test_bad_device_url_is_named(url, words):
    with pytest.raises(InvalidConfigError) as info:
        load_config({**BASE, "WEBLAB_DEVICES": {"board": url}})
    assert all(word in str(info.value) for word in words), str(info.value)


def test_devices_load_from_the_toml_maps():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    for name in ("devices.sim.toml", "devices.rig.toml"):
        app = Flask("maps")
        # text mode: Flask 2.2 has no from_file(text=False) (the config/ examples need 2.3+)
        app.config.from_file(str(root / "config" / name), load=lambda f: tomllib.loads(f.read()))
        devices = load_config({**app.config, **BASE}).devices
        assert "board" in devices and "led" in devices


def test_unknown_key_warns(caplog):
    load_config({**BASE, "WEBLAB_TIMEOUTT": 3})
    assert "WEBLAB_TIMEOUTT" in caplog.text


def test_second_init_app_raises(redis_url):
    app = Flask("twice")
    app.config.update(BASE, WEBLAB_REDIS_URL=redis_url)
    weblab = WebLab(app)
    with pytest.raises(AlreadyInitializedError, match="already initialized"):
        weblab.init_app(app)
    with pytest.raises(AlreadyInitializedError):
        WebLab(app)


def test_one_weblab_two_apps(redis_url, redis_base):
    weblab = WebLab()
    apps = []
    for name, base in (("a", "/a"), ("b", "/b")):
        app = Flask(name)
        app.config.update(BASE, **QUIET, WEBLAB_REDIS_URL=redis_url, WEBLAB_BASE_URL=base)
        app.config["WEBLAB_REDIS_BASE"] = f"{redis_base}{name}"
        weblab.init_app(app)
        apps.append(app)
    assert apps[0].test_client().get("/a/weblab/sessions/api").status_code == 200
    assert apps[1].test_client().get("/b/weblab/sessions/api").status_code == 200
    assert apps[0].extensions["weblab"].config.base_url == "/a"
    assert apps[1].extensions["weblab"].config.base_url == "/b"
    assert all(app.extensions["weblab"].cleaner is None for app in apps)


@pytest.mark.parametrize(
    "key,value", [("WEBLAB_AUTOCLEAN_THREAD", True), ("WEBLAB_TASK_THREADS_PROCESS", 2)]
)
def test_no_thread_conflicts(key, value):
    with pytest.raises(InvalidConfigError, match=f"{key}.*WEBLAB_NO_THREAD"):
        load_config({**BASE, "WEBLAB_NO_THREAD": True, key: value})
    assert load_config({**BASE, "WEBLAB_NO_THREAD": True}).no_thread is True


def test_hooks_register_once(redis_url):
    app = Flask("hooks")
    app.config.update(BASE, WEBLAB_REDIS_URL=redis_url)
    weblab = WebLab(app)
    for name in ("on_start", "on_dispose", "initial_url", "user_loader"):
        getattr(weblab, name)(lambda *a: None)
        with pytest.raises(InvalidConfigError, match=f"@weblab.{name} is already defined"):
            getattr(weblab, name)(lambda *a: None)
