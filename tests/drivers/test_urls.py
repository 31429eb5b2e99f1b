"""Device URL parsing and the typed option helpers: every bad input has a clear error."""

from __future__ import annotations

import pytest

from labruntime.drivers import DeviceURLError, DriverError, parse_device_url
from labruntime.drivers.urls import (
    DeviceURL,
    opt_bool,
    opt_choice,
    opt_float,
    opt_int,
    opt_str,
    reject_unknown,
)

GRAMMAR = "demo:TARGET?speed=N&mode=a|b"


def test_scheme_target_and_options() -> None:
    url = parse_device_url("Serial:/dev/ttyUSB0?baudrate=115200&timeout=2")
    assert url.scheme == "serial"
    assert url.target == "/dev/ttyUSB0"
    assert url.options == {"baudrate": "115200", "timeout": "2"}
    assert str(url) == "Serial:/dev/ttyUSB0?baudrate=115200&timeout=2"


def test_target_may_be_a_url_and_option_values_may_be_urls() -> None:
    assert parse_device_url("serial:rfc2217://pi-7:4001").target == "rfc2217://pi-7:4001"
    assert parse_device_url("serial:loop://").target == "loop://"
    url = parse_device_url("stk500:/dev/ttyACM0?reset=gpio:4&baudrate=57600")
    assert url.options["reset"] == "gpio:4"
    nested = parse_device_url("stk500:/dev/ttyACM0?reset=gpio:4%3Factive_high%3Dfalse%26safe%3D1")
    assert nested.options["reset"] == "gpio:4?active_high=false&safe=1"
    assert parse_device_url(nested.options["reset"]).options == {
        "active_high": "false",
        "safe": "1",
    }


def test_parse_is_idempotent_on_parsed_urls() -> None:
    url = parse_device_url("gpio:17")
    assert parse_device_url(url) is url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/dev/ttyUSB0", "no scheme"),
        ("9serial:/dev/x", "not a valid scheme"),
        ("serial:", "target after the scheme is empty"),
        ("serial:?baudrate=1", "target after the scheme is empty"),
        ("gpio:17?safe", "option 'safe' has no value"),
        ("gpio:17?=1", "has no name"),
        ("gpio:17?safe=0&safe=1", "given twice"),
    ],
)
def test_malformed_urls(text: str, expected: str) -> None:
    with pytest.raises(DeviceURLError) as info:
        parse_device_url(text)
    message = str(info.value)
    assert expected in message
    assert "Grammar: scheme:target?key=value" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, DriverError)


def test_not_a_string() -> None:
    with pytest.raises(DeviceURLError, match="must be a string"):
        parse_device_url(17)  # type: ignore[arg-type]


def url(options: dict[str, str]) -> DeviceURL:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return parse_device_url(f"demo:x?{query}" if query else "demo:x")


def test_opt_int() -> None:
    assert opt_int(url({"n": "12"}), "n") == 12
    assert opt_int(url({"n": "0x10"}), "n") == 16
    assert opt_int(url({}), "n", 7) == 7
    with pytest.raises(DeviceURLError, match=r"n='fast' is not an integer.*demo:TARGET"):
        opt_int(url({"n": "fast"}), "n", grammar=GRAMMAR)
    with pytest.raises(DeviceURLError, match="below 1"):
        opt_int(url({"n": "0"}), "n", minimum=1)
    with pytest.raises(DeviceURLError, match="above 10"):
        opt_int(url({"n": "11"}), "n", maximum=10)


def test_opt_float() -> None:
    assert opt_float(url({"t": "0.25"}), "t") == 0.25
    assert opt_float(url({}), "t", 1.5) == 1.5
    for bad in ("soon", "nan", "inf"):
        with pytest.raises(DeviceURLError, match="t="):
            opt_float(url({"t": bad}), "t")
    with pytest.raises(DeviceURLError, match="below 0"):
        opt_float(url({"t": "-1"}), "t", minimum=0.0)


@pytest.mark.parametrize("word", ["true", "1", "yes", "on", "TRUE", "On"])
def test_opt_bool_true(word: str) -> None:
    assert opt_bool(url({"b": word}), "b") is True


@pytest.mark.parametrize("word", ["false", "0", "no", "off", "False"])
def test_opt_bool_false(word: str) -> None:
    assert opt_bool(url({"b": word}), "b") is False


def test_opt_bool_bad_and_default() -> None:
    assert opt_bool(url({}), "b", True) is True
    with pytest.raises(DeviceURLError, match="is not a boolean .*true/false"):
        opt_bool(url({"b": "maybe"}), "b")


def test_opt_choice_and_str() -> None:
    assert opt_choice(url({"mode": "B"}), "mode", ["a", "b"]) == "b"
    assert opt_choice(url({}), "mode", ["a", "b"], "a") == "a"
    with pytest.raises(DeviceURLError, match="must be one of a, b"):
        opt_choice(url({"mode": "c"}), "mode", ["a", "b"], grammar=GRAMMAR)
    assert opt_str(url({"s": "x y"}), "s") == "x y"
    with pytest.raises(DeviceURLError, match="'s' is empty"):
        opt_str(url({"s": ""}), "s")


def test_reject_unknown_lists_known_options_and_grammar() -> None:
    reject_unknown(url({"speed": "1"}), {"speed", "mode"}, GRAMMAR)
    with pytest.raises(DeviceURLError) as info:
        reject_unknown(url({"sped": "1", "mdoe": "a"}), {"speed", "mode"}, GRAMMAR)
    message = str(info.value)
    assert "unknown options 'mdoe', 'sped'" in message
    assert "known: mode, speed" in message
    assert GRAMMAR in message
