"""Device URLs: ``scheme:target?key=value&key2=value2``.

* ``scheme`` is everything before the first ``:`` (letters, digits, ``+ - .``; lower-cased).
* ``target`` is everything after it up to the first ``?``; it may itself be a URL
  (``serial:rfc2217://pi-7:4001``, ``serial:loop://``).
* options follow the ``?`` as ``key=value`` pairs joined by ``&``. Values are percent-decoded,
  so a value may hold a URL of its own (``stk500:/dev/ttyACM0?reset=gpio:4``; write ``%3F`` and
  ``%26`` for a ``?`` or ``&`` inside a value). A key may appear once.

Which options exist, and their types, is up to each scheme's driver, which checks them with the
``opt_*`` helpers and :func:`reject_unknown`; each error shows the scheme's grammar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import overload
from urllib.parse import unquote

from .errors import DeviceURLError

__all__ = [
    "DeviceURL",
    "opt_bool",
    "opt_choice",
    "opt_float",
    "opt_int",
    "opt_str",
    "parse_device_url",
    "reject_unknown",
]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_GENERIC = "scheme:target?key=value&key2=value2"


@dataclass(frozen=True)
class DeviceURL:
    """A parsed device URL. ``raw`` is the text it came from."""

    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    def __str__(self) -> str:
        return self.raw or self.scheme + ":" + self.target

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)


def _fail(url: str, problem: str, grammar: str, scheme: str | None = None) -> DeviceURLError:
    return DeviceURLError(
        f"bad device URL {url!r}: {problem}. Grammar: {grammar}",
        url=url,
        scheme=scheme,
        problem=problem,
    )


def parse_device_url(url: str | DeviceURL) -> DeviceURL:
    """Parse ``url``; DeviceURLError (with the generic grammar) if it is malformed."""
    if isinstance(url, DeviceURL):
        return url
    if not isinstance(url, str):
        raise DeviceURLError(
            f"a device URL must be a string like {_GENERIC!r}, got {type(url).__name__}"
        )
    raw = url.strip()
    scheme, sep, rest = raw.partition(":")
    if not sep:
        raise _fail(
            raw, "no scheme (expected 'scheme:target', e.g. 'serial:/dev/ttyUSB0')", _GENERIC
        )
    if not _SCHEME.match(scheme):
        raise _fail(raw, f"{scheme!r} is not a valid scheme name", _GENERIC)
    scheme = scheme.lower()
    target, qmark, query = rest.partition("?")
    if not target:
        raise _fail(raw, "the target after the scheme is empty", _GENERIC, scheme)
    options: dict[str, str] = {}
    if qmark and query:
        for part in query.split("&"):
            if not part:
                continue
            key, eq, value = part.partition("=")
            key = unquote(key).strip()
            if not eq:
                raise _fail(
                    raw, f"option {key!r} has no value (write {key}=VALUE)", _GENERIC, scheme
                )
            if not key:
                raise _fail(raw, f"option {part!r} has no name", _GENERIC, scheme)
            if key in options:
                raise _fail(raw, f"option {key!r} is given twice", _GENERIC, scheme)
            options[key] = unquote(value)
    if "baud" in options:  # one spelling for every driver: ``baud`` is ``baudrate``
        if "baudrate" in options:
            raise _fail(
                raw, "give baud or baudrate, not both (they are the same)", _GENERIC, scheme
            )
        options["baudrate"] = options.pop("baud")
    return DeviceURL(scheme=scheme, target=target, options=options, raw=raw)


def reject_unknown(url: DeviceURL, allowed: Iterable[str], grammar: str) -> None:
    """Raise DeviceURLError if ``url`` has an option not in ``allowed``."""
    allowed = set(allowed)
    unknown = sorted(set(url.options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        what = "options" if len(unknown) > 1 else "option"
        raise _fail(
            str(url),
            f"unknown {what} {', '.join(map(repr, unknown))} for scheme {url.scheme!r} "
            f"(known: {known})",
            grammar,
        )


@overload
def opt_str(url: DeviceURL, key: str, default: str, *, grammar: str = "") -> str: ...
@overload
def opt_str(url: DeviceURL, key: str, default: None = None, *, grammar: str = "") -> str | None: ...
def opt_str(
    url: DeviceURL, key: str, default: str | None = None, *, grammar: str = ""
) -> str | None:
    """The raw string value of option ``key``, or ``default``."""
    value = url.options.get(key)
    if value is None:
        return default
    if value == "":
        raise _fail(str(url), f"option {key!r} is empty", grammar or _GENERIC)
    return value


@overload
def opt_int(
    url: DeviceURL,
    key: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    grammar: str = "",
) -> int: ...
@overload
def opt_int(
    url: DeviceURL,
    key: str,
    default: None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    grammar: str = "",
) -> int | None: ...
def opt_int(
    url: DeviceURL,
    key: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    grammar: str = "",
) -> int | None:
    """Option ``key`` as an int (decimal or 0x hex), within [minimum, maximum]."""
    value = url.options.get(key)
    if value is None:
        return default
    try:
        number = int(value, 0)
    except ValueError:
        raise _fail(
            str(url), f"option {key}={value!r} is not an integer", grammar or _GENERIC
        ) from None
    _check_range(url, key, number, minimum, maximum, grammar)
    return number


@overload
def opt_float(
    url: DeviceURL,
    key: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    grammar: str = "",
) -> float: ...
@overload
def opt_float(
    url: DeviceURL,
    key: str,
    default: None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    grammar: str = "",
) -> float | None: ...
def opt_float(
    url: DeviceURL,
    key: str,
    default: float | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    grammar: str = "",
) -> float | None:
    """Option ``key`` as a float (seconds, ratios...), within [minimum, maximum]."""
    value = url.options.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _fail(
            str(url), f"option {key}={value!r} is not a number", grammar or _GENERIC
        ) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _fail(
            str(url), f"option {key}={value!r} must be a finite number", grammar or _GENERIC
        )
    _check_range(url, key, number, minimum, maximum, grammar)
    return number


def _check_range(
    url: DeviceURL,
    key: str,
    number: float,
    minimum: float | None,
    maximum: float | None,
    grammar: str,
) -> None:
    if minimum is not None and number < minimum:
        raise _fail(str(url), f"option {key}={number} is below {minimum}", grammar or _GENERIC)
    if maximum is not None and number > maximum:
        raise _fail(str(url), f"option {key}={number} is above {maximum}", grammar or _GENERIC)


@overload
def opt_bool(url: DeviceURL, key: str, default: bool, *, grammar: str = "") -> bool: ...
@overload
def opt_bool(
    url: DeviceURL, key: str, default: None = None, *, grammar: str = ""
) -> bool | None: ...
def opt_bool(
    url: DeviceURL, key: str, default: bool | None = None, *, grammar: str = ""
) -> bool | None:
    """Option ``key`` as a bool: true/false, 1/0, yes/no, on/off (any case)."""
    value = url.options.get(key)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _fail(
        str(url),
        f"option {key}={value!r} is not a boolean (use true/false, 1/0, yes/no or on/off)",
        grammar or _GENERIC,
    )


@overload
def opt_choice(
    url: DeviceURL, key: str, choices: Iterable[str], default: str, *, grammar: str = ""
) -> str: ...
@overload
def opt_choice(
    url: DeviceURL, key: str, choices: Iterable[str], default: None = None, *, grammar: str = ""
) -> str | None: ...
def opt_choice(
    url: DeviceURL,
    key: str,
    choices: Iterable[str],
    default: str | None = None,
    *,
    grammar: str = "",
) -> str | None:
    """Option ``key``, which must be one of ``choices`` (compared lower-cased)."""
    value = url.options.get(key)
    if value is None:
        return default
    choices = list(choices)
    lowered = value.strip().lower()
    if lowered not in choices:
        raise _fail(
            str(url),
            f"option {key}={value!r} must be one of {', '.join(choices)}",
            grammar or _GENERIC,
        )
    return lowered
