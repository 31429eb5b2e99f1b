"""The RLMS's start request: the initial data, the student's fields and the slot times.

Every form of docs/protocol.md is accepted: the initial data as objects or JSON strings, the slot
start as a timestamp, a UTC date or a local date. A bad request raises
:class:`~labruntime.errors.InvalidStartRequestError` naming the field and the expected form.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from labruntime.errors import InvalidStartRequestError

__all__ = [
    "MAX_BACK_LENGTH",
    "MAX_INITIAL_DATA_DEPTH",
    "StartRequest",
    "json_depth",
    "parse_start_request",
    "safe_back",
    "slot_times",
]

MAX_SLOT_LENGTH = 366 * 24 * 3600.0  # a slot longer than a year is a broken RLMS, not a student
MAX_START_OFFSET = 366 * 24 * 3600.0  # a slot starting more than a year ahead: same
# Initial data is stored as JSON and loaded back on every request of the session: far below
# Python's recursion limit (about 1,000), so whatever a start stores can be read back.
MAX_INITIAL_DATA_DEPTH = 100
MAX_BACK_LENGTH = 4096  # characters of the ``back`` link (a real one is well under 500)

# StudentFields name -> the server_initial_data key the RLMS sends it in ("back" is apart).
RLMS_KEYS = {
    "username": "request.username",
    "username_unique": "request.username.unique",
    "full_name": "request.full_name",
    "locale": "request.locale",  # as sent, like weblablib
    "experiment_name": "request.experiment_id.experiment_name",
    "category_name": "request.experiment_id.category_name",
}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class StartRequest:
    """What the RLMS sent to start a session."""

    client_data: dict[str, Any]
    server_data: dict[str, Any]
    back: str | None

    def student_fields(self) -> dict[str, Any]:
        """The :class:`~labruntime.store.records.StudentFields` values this request gives."""
        fields = {name: _text(self.server_data.get(key)) for name, key in RLMS_KEYS.items()}
        return {**fields, "back": self.back}


def json_depth(value: Any) -> int:
    """How deeply ``value`` (decoded JSON) nests lists and objects: 0 for a scalar, 1 for
    ``{}``. Iterative, so a value nested past Python's recursion limit is measured too."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _unsafe_char(ch: str) -> bool:
    # control characters (CR/LF would split a Location header), invisible format characters
    # (bidi overrides that disguise a link), whitespace
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")


def back_problem(value: Any) -> str | None:
    """Why ``value`` cannot be the ``back`` link (None: it is an absolute http(s) URL)."""
    if not isinstance(value, str):
        return f"back must be a text URL, got {type(value).__name__}"
    if len(value) > MAX_BACK_LENGTH:
        return f"back is {len(value)} characters long; the limit is {MAX_BACK_LENGTH}"
    if any(_unsafe_char(ch) for ch in value) or "\\" in value:
        return "back holds control characters, spaces or backslashes"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return "back is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "back must be an absolute http:// or https:// URL (e.g. https://rlms.example/back)"
    return None


def safe_back(value: Any) -> str | None:
    """``value`` if it is a ``back`` link safe to redirect to or to show as a link, else None."""
    if value in (None, "") or back_problem(value) is not None:
        return None
    return str(value)


def _as_object(payload: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise InvalidStartRequestError(f"{name} is not valid JSON: {error}") from error
        except RecursionError:
            raise InvalidStartRequestError(f"{name} is nested too deeply to be read") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidStartRequestError(f"{name} must be an object, got {type(value).__name__}")
    depth = json_depth(value)
    if depth > MAX_INITIAL_DATA_DEPTH:
        raise InvalidStartRequestError(
            f"{name} is nested {depth} levels deep; the limit is {MAX_INITIAL_DATA_DEPTH} "
            "(send flatter initial data)",
            status=400,
        )
    return value


def parse_start_request(payload: Mapping[str, Any]) -> StartRequest:
    """Accept the initial data as objects or as JSON strings (WebLab-Deusto api "0", forms).

    ``back`` must be missing, empty, or an absolute http(s) URL without control characters:
    it becomes a redirect and a link for the student.
    """
    back = payload.get("back")
    if back in (None, ""):
        back = None
    else:
        problem = back_problem(back)
        if problem:
            raise InvalidStartRequestError(problem, status=400)
    return StartRequest(
        client_data=_as_object(payload, "client_initial_data"),
        server_data=_as_object(payload, "server_initial_data"),
        back=back,
    )


def _parse_datetime(text: str, naive_is_utc: bool) -> float:
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None and naive_is_utc:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()  # naive: local time, as WebLab-Deusto's str(datetime)


def slot_times(server_data: Mapping[str, Any], now: float) -> tuple[float, float]:
    """(start, length) in seconds from server_initial_data, every form of docs/protocol.md."""
    raw_length = server_data.get("priority.queue.slot.length")
    try:
        length = float(raw_length)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidStartRequestError(
            f"priority.queue.slot.length={raw_length!r} is not a number of seconds"
        ) from None
    if not math.isfinite(length) or not 0 < length <= MAX_SLOT_LENGTH:
        raise InvalidStartRequestError(
            f"priority.queue.slot.length={raw_length!r} must be a number of seconds > 0 and "
            f"<= {MAX_SLOT_LENGTH:.0f} (one year)"
        )
    start = now
    timestamp = server_data.get("priority.queue.slot.start.timestamp")
    if timestamp not in (None, ""):
        try:
            start = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            raise InvalidStartRequestError(
                f"priority.queue.slot.start.timestamp={timestamp!r} is not a number"
            ) from None
        _check_start("priority.queue.slot.start.timestamp", timestamp, start, now)
    else:
        for name, naive_is_utc in (
            ("priority.queue.slot.start.utc", True),
            ("priority.queue.slot.start", False),
        ):
            text = server_data.get(name)
            if text in (None, ""):
                continue
            try:
                start = _parse_datetime(str(text), naive_is_utc)
            except (ValueError, OverflowError, OSError):
                raise InvalidStartRequestError(
                    f"{name}={text!r} is not a date (expected e.g. '2026-11-24 18:00:00.123456' "
                    "or ISO-8601 '2026-11-24T18:00:00+01:00')"
                ) from None
            _check_start(name, text, start, now)
            break
    return start, length


def _check_start(name: str, raw: Any, start: float, now: float) -> None:
    """A start after 1970 and at most a year ahead (a past slot is only over at once)."""
    if not math.isfinite(start) or not 0 <= start <= now + MAX_START_OFFSET:
        raise InvalidStartRequestError(
            f"{name}={raw!r} is not a slot start between 1970 and a year from now "
            "(a UNIX time in seconds)"
        )
