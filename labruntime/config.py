"""Every WEBLAB_* configuration key: its default, its type and its validation.

:func:`load_config` reads a Flask ``app.config`` mapping and returns a frozen
:class:`WebLabConfig`, or raises :class:`~labruntime.errors.InvalidConfigError` naming the key,
the value found and what is expected. It runs at ``init_app`` before anything is registered.

Values may come from Python (``True``, ``15``) or from the environment/files as strings
(``"False"``, ``"15"``): ``"False"`` means False.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidConfigError

__all__ = ["WebLabConfig", "load_config", "check_secrets", "KNOWN_KEYS"]

log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f", ""}


@dataclass(frozen=True)
class WebLabConfig:
    """The validated WEBLAB_* settings of one app."""

    username: str
    password: str
    base_url: str = ""
    callback_url: str = "/callback"
    session_id_name: str = "weblab_session_id"
    redis_url: str | None = None
    redis_base: str = "lab"
    timeout: float = 15.0
    poll_interval: float = 5.0
    cleaner_interval: float = 5.0
    autopoll: bool = True
    unauthorized_link: str | None = None
    unauthorized_template: str | None = None
    scheme: str | None = None
    expired_users_timeout: float = 3600.0
    autoclean_thread: bool = True
    task_threads_process: int = 3
    no_thread: bool = False
    task_expires: float = 3600.0
    log_session_lifecycle: bool = True
    dispose_timeout: float = 60.0
    devices: Mapping[str, str] = field(default_factory=dict)
    session_cache: bool = True


def _fail(key: str, value: Any, expected: str) -> InvalidConfigError:
    return InvalidConfigError(f"{key}={value!r} is invalid: expected {expected}")


def _string(
    cfg: Mapping[str, Any], key: str, default: str | None, *, required: bool = False
) -> Any:
    value = cfg.get(key, default)
    if value is None:
        if required:  # "Missing <KEY>": weblablib's phrase, which labs' tests match
            raise InvalidConfigError(
                f"Invalid configuration. Missing {key}: set app.config[{key!r}] to a "
                "non-empty string"
            )
        return None
    if not isinstance(value, str) or (required and not value):
        raise _fail(key, value, "a non-empty string" if required else "a string")
    return value


def _bool(cfg: Mapping[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _fail(key, value, "True or False (or the strings 'true'/'false', '1'/'0')")


def _number(cfg: Mapping[str, Any], key: str, default: float, *, positive: bool) -> float:
    value = cfg.get(key, default)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or number != number or number in (float("inf"), float("-inf")):
        raise _fail(key, value, "a number of seconds")
    if positive and number <= 0:
        raise _fail(key, value, "a number of seconds greater than 0")
    return number


def _integer(cfg: Mapping[str, Any], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(key, value, "a whole number >= 0")
    return value


def _path(cfg: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = _string(cfg, key, default)
    if value is None:
        return None
    if value and not value.startswith("/"):
        raise _fail(key, value, "a path starting with '/' (e.g. '/lab1'), or ''")
    return value.rstrip("/")


_DEVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _devices(cfg: Mapping[str, Any]) -> dict[str, str]:
    value = cfg.get("WEBLAB_DEVICES", {})
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise _fail("WEBLAB_DEVICES", value, "a dict of device name -> device URL string")
    from .drivers import DriverError, validate_device_url

    for name, url in value.items():
        if not _DEVICE_NAME.fullmatch(name):  # names go in Redis keys, pools and --device NAME=
            raise InvalidConfigError(
                f"WEBLAB_DEVICES: device name {name!r} is invalid: use letters, digits, '_' "
                "and '-' (up to 64, starting with a letter), e.g. 'board' or 'led_1'"
            )
        try:
            validate_device_url(url)
        except DriverError as error:
            raise InvalidConfigError(
                f"WEBLAB_DEVICES[{name!r}] = {url!r} is invalid: {error}"
            ) from error
    return dict(value)


def _redis_url(cfg: Mapping[str, Any]) -> str | None:
    value = _string(cfg, "WEBLAB_REDIS_URL", None)
    if value is None or value == "":
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise _fail(
            "WEBLAB_REDIS_URL",
            value,
            "a redis://, rediss:// or unix:// URL (or leave it unset for the embedded server)",
        )
    return value


def load_config(
    cfg: Mapping[str, Any], *, base_url: str | None = None, callback_url: str | None = None
) -> WebLabConfig:
    """Validate ``cfg`` (an app.config) and return the frozen settings.

    ``base_url``/``callback_url`` given to ``WebLab(...)`` take precedence over the config.
    """
    secret = cfg.get("SECRET_KEY")
    if secret is not None and not isinstance(secret, str | bytes):
        raise InvalidConfigError(
            f"SECRET_KEY={secret!r} is invalid: the student's session lives in Flask's signed "
            "cookie, so set app.config['SECRET_KEY'] to a long random string, different per lab"
        )
    if not secret:  # as weblablib: refused at the first student (sessions/views.py), not here
        log.warning(
            "SECRET_KEY is not set: students cannot enter this lab until "
            "app.config['SECRET_KEY'] is set to a long random string, different per lab"
        )
    if base_url is None:
        base_url = cfg.get("WEBLAB_BASE_URL", cfg.get("WEBLAB_BASE", ""))
        base = _path({"WEBLAB_BASE_URL": base_url}, "WEBLAB_BASE_URL", "")
    else:
        base = _path({"base_url": base_url}, "base_url", "")
    base = base or ""
    if callback_url:  # WebLab(callback_url="") means "not given", as in weblablib
        callback = _path({"callback_url": callback_url}, "callback_url", None)
        given: tuple[str, Any] = ("callback_url", callback_url)
    else:
        callback = _path(cfg, "WEBLAB_CALLBACK_URL", None)
        given = ("WEBLAB_CALLBACK_URL", cfg.get("WEBLAB_CALLBACK_URL"))
        if callback is None and "WEBLAB_CALLBACK_URL" not in cfg:
            callback = base + "/callback"
    if not callback:  # None, "" or "/": the student's link would be the site's root
        raise InvalidConfigError(
            f"{given[0]}={given[1]!r} is invalid: Empty URL. Give the student's entry path, "
            "e.g. '/callback' (or leave WEBLAB_CALLBACK_URL unset for <base_url>/callback)"
        )
    scheme = _string(cfg, "WEBLAB_SCHEME", None)
    if scheme is not None:
        scheme = scheme.strip().lower() or None
        if scheme not in (None, "http", "https"):
            raise _fail("WEBLAB_SCHEME", cfg.get("WEBLAB_SCHEME"), "'http' or 'https'")
    redis_base = _string(cfg, "WEBLAB_REDIS_BASE", "lab")
    if not redis_base or any(ch.isspace() for ch in redis_base):
        raise _fail("WEBLAB_REDIS_BASE", redis_base, "a non-empty prefix without spaces")
    session_id_name = _string(cfg, "WEBLAB_SESSION_ID_NAME", "weblab_session_id")
    if not session_id_name:
        raise _fail("WEBLAB_SESSION_ID_NAME", session_id_name, "a non-empty string")
    for key in ("WEBLAB_UNAUTHORIZED_LINK", "WEBLAB_UNAUTHORIZED_TEMPLATE"):
        _string(cfg, key, None)
    poll_interval = _number(cfg, "WEBLAB_POLL_INTERVAL", 5, positive=False)
    if poll_interval < 0:  # 0 is weblablib's "WebLab-Deusto will not ask again"
        raise _fail("WEBLAB_POLL_INTERVAL", cfg.get("WEBLAB_POLL_INTERVAL"), "seconds >= 0")
    config = WebLabConfig(
        username=_string(cfg, "WEBLAB_USERNAME", None, required=True),
        password=_string(cfg, "WEBLAB_PASSWORD", None, required=True),
        base_url=base,
        callback_url=callback,
        session_id_name=session_id_name,
        redis_url=_redis_url(cfg),
        redis_base=redis_base,
        timeout=_number(cfg, "WEBLAB_TIMEOUT", 15, positive=False),
        poll_interval=poll_interval,
        cleaner_interval=_number(cfg, "WEBLAB_CLEANER_INTERVAL", 5, positive=True),
        autopoll=_bool(cfg, "WEBLAB_AUTOPOLL", True),
        unauthorized_link=cfg.get("WEBLAB_UNAUTHORIZED_LINK") or None,
        unauthorized_template=cfg.get("WEBLAB_UNAUTHORIZED_TEMPLATE") or None,
        scheme=scheme,
        expired_users_timeout=_number(cfg, "WEBLAB_EXPIRED_USERS_TIMEOUT", 3600, positive=True),
        autoclean_thread=_bool(cfg, "WEBLAB_AUTOCLEAN_THREAD", True),
        task_threads_process=_integer(cfg, "WEBLAB_TASK_THREADS_PROCESS", 3),
        no_thread=_bool(cfg, "WEBLAB_NO_THREAD", False),
        task_expires=_number(cfg, "WEBLAB_TASK_EXPIRES", 3600, positive=True),
        log_session_lifecycle=_bool(cfg, "WEBLAB_LOG_SESSION_LIFECYCLE", True),
        dispose_timeout=_number(cfg, "WEBLAB_DISPOSE_TIMEOUT", 60, positive=True),
        session_cache=_bool(cfg, "WEBLAB_SESSION_CACHE", True),
        devices=_devices(cfg),
    )
    if config.no_thread:  # "is incompatible with": weblablib's phrase
        if cfg.get("WEBLAB_AUTOCLEAN_THREAD") is not None and config.autoclean_thread:
            raise InvalidConfigError(
                "WEBLAB_NO_THREAD=True is incompatible with WEBLAB_AUTOCLEAN_THREAD="
                f"{cfg.get('WEBLAB_AUTOCLEAN_THREAD')!r}: set WEBLAB_AUTOCLEAN_THREAD to False "
                "(or leave it unset) when WEBLAB_NO_THREAD is True"
            )
        if cfg.get("WEBLAB_TASK_THREADS_PROCESS") is not None and config.task_threads_process:
            raise InvalidConfigError(
                "WEBLAB_NO_THREAD=True is incompatible with WEBLAB_TASK_THREADS_PROCESS="
                f"{cfg.get('WEBLAB_TASK_THREADS_PROCESS')!r}: set WEBLAB_TASK_THREADS_PROCESS "
                "to 0 (or leave it unset) when WEBLAB_NO_THREAD is True"
            )
    check_secrets(cfg)
    unknown = sorted(k for k in cfg if k.startswith("WEBLAB_") and k not in KNOWN_KEYS)
    if unknown:
        log.warning("unknown configuration keys (typo?): %s", ", ".join(unknown))
    return config


MIN_SECRET_LENGTH = 16
# Values published in labruntime's own files (config/lab.example.toml, the README): whoever read
# them can forge a student's cookie or call the lab as its RLMS.
PUBLISHED_SECRETS = frozenset(
    {
        "change-me-rlms-password",
        "change-me-to-a-long-random-string",
        "a long random string, one per lab",
        "a long random password",
    }
)
_HOW = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_secrets(cfg: Mapping[str, Any]) -> None:
    """Refuse weak or published secrets: ``SECRET_KEY`` (it signs the student's cookie) and
    ``WEBLAB_PASSWORD`` (the RLMS's password).

    Refused: a value of whitespace only, an example value shipped with labruntime (anything
    starting with ``change-me``), the password equal to the secret key, and a value shorter
    than :data:`MIN_SECRET_LENGTH` characters, which is only a warning when ``DEBUG`` is on
    (``app.debug``, a developer's machine). Keys that are missing or of the wrong type are left
    to their own checks.
    """
    debug = cfg.get("DEBUG") is True
    texts: dict[str, str] = {}
    for key in ("SECRET_KEY", "WEBLAB_PASSWORD"):
        value = cfg.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str) or value == "":
            continue
        texts[key] = value
        if not value.strip():
            raise InvalidConfigError(
                f"{key} is only whitespace: set it to a long random string, e.g. the output of "
                f"{_HOW}"
            )
        folded = value.strip().lower()
        if folded in PUBLISHED_SECRETS or folded.startswith(("change-me", "changeme")):
            raise InvalidConfigError(
                f"{key} is still the example value {value!r} published with labruntime: "
                f"anyone can read it. Set your own long random string, e.g. the output of {_HOW}"
            )
        if len(value) < MIN_SECRET_LENGTH:
            message = (
                f"{key} is {len(value)} characters long: use at least {MIN_SECRET_LENGTH} "
                f"random characters, e.g. the output of {_HOW}"
            )
            if not debug:
                raise InvalidConfigError(message)
            log.warning("%s (accepted because DEBUG is on)", message)
    if texts.get("SECRET_KEY") is not None and texts.get("SECRET_KEY") == texts.get(
        "WEBLAB_PASSWORD"
    ):
        raise InvalidConfigError(
            "WEBLAB_PASSWORD is the same as SECRET_KEY: the RLMS's password must not be the key "
            "that signs students' cookies; give each its own random string"
        )


KNOWN_KEYS = frozenset(
    {
        "WEBLAB_USERNAME",
        "WEBLAB_PASSWORD",
        "WEBLAB_SESSION_CACHE",
        "WEBLAB_BASE_URL",
        "WEBLAB_BASE",
        "WEBLAB_CALLBACK_URL",
        "WEBLAB_SESSION_ID_NAME",
        "WEBLAB_REDIS_URL",
        "WEBLAB_REDIS_BASE",
        "WEBLAB_TIMEOUT",
        "WEBLAB_POLL_INTERVAL",
        "WEBLAB_CLEANER_INTERVAL",
        "WEBLAB_AUTOPOLL",
        "WEBLAB_UNAUTHORIZED_LINK",
        "WEBLAB_UNAUTHORIZED_TEMPLATE",
        "WEBLAB_SCHEME",
        "WEBLAB_EXPIRED_USERS_TIMEOUT",
        "WEBLAB_AUTOCLEAN_THREAD",
        "WEBLAB_TASK_THREADS_PROCESS",
        "WEBLAB_NO_THREAD",
        "WEBLAB_TASK_EXPIRES",
        "WEBLAB_LOG_SESSION_LIFECYCLE",
        "WEBLAB_DISPOSE_TIMEOUT",
        "WEBLAB_DEVICES",
    }
)
