"""What the stores return: domain records decoded from Redis, never raw hashes.

- :class:`SessionRecord` (one session hash) and :class:`SessionState` (the few fields a
  status call reads); :class:`StudentFields` is the one list of what the RLMS says about the
  student (:data:`STUDENT_FIELDS`), which the session users copy;
- :class:`TaskRecord` (one task hash), its states and :func:`error_info`.

Nested values are JSON, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DONE",
    "FAILED",
    "FINAL_STATES",
    "LIGHT_FIELDS",
    "RUNNING",
    "STUDENT_FIELDS",
    "SUBMITTED",
    "TIME_FIELDS",
    "SessionRecord",
    "SessionState",
    "StudentFields",
    "TaskRecord",
    "error_info",
]


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


@dataclass(kw_only=True, eq=False)
class StudentFields:
    """Who the session is for and in which lab, as the RLMS sent it (None: not sent).

    The one list of these fields: :class:`SessionRecord` stores them, and the session users
    (``weblab_user.username`` ...) copy them.
    """

    username: str | None = None
    username_unique: str | None = None
    full_name: str | None = None
    locale: str | None = None
    back: str | None = None
    experiment_name: str | None = None
    category_name: str | None = None


STUDENT_FIELDS = tuple(f.name for f in fields(StudentFields))
TIME_FIELDS = ("start_date", "max_date", "last_poll")  # Unix timestamps, stored with repr()


@dataclass(kw_only=True)
class SessionRecord(StudentFields):
    """One session as stored: what the RLMS sent plus the lab's data and the timings."""

    session_id: str
    status: str = "active"
    client_data: dict[str, Any] = field(default_factory=dict)
    server_data: dict[str, Any] = field(default_factory=dict)
    start_date: float = 0.0
    max_date: float = 0.0
    last_poll: float = 0.0
    exited: bool = False
    data_json: str = "{}"
    reason: str | None = None
    dispose_claim: str | None = None
    ended_at: float | None = None
    #: False for a record read without the RLMS's initial data (a student's request reads
    #: only :data:`LIGHT_FIELDS`): ``client_data``/``server_data`` are empty until loaded
    blobs_loaded: bool = True

    def to_hash(self) -> dict[str, str]:
        """The fields written to Redis (JSON for nested values, never pickle)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in STUDENT_FIELDS}
        values.update({name: repr(getattr(self, name)) for name in TIME_FIELDS})
        values.update(
            status=self.status,
            client_data=json.dumps(self.client_data),
            server_data=json.dumps(self.server_data),
            exited="1" if self.exited else "0",
            data=self.data_json,
        )
        return {k: v for k, v in values.items() if v is not None}

    @classmethod
    def from_hash(
        cls, session_id: str, h: dict[str, str], *, blobs_loaded: bool = True
    ) -> SessionRecord:
        """Build a record from an HGETALL reply (``blobs_loaded=False``: from the
        :data:`LIGHT_FIELDS` only)."""

        def num(name: str) -> float:
            try:
                return float(h.get(name) or 0.0)
            except ValueError:
                return 0.0

        student: dict[str, Any] = {name: h.get(name) for name in STUDENT_FIELDS}
        times: dict[str, Any] = {name: num(name) for name in TIME_FIELDS}
        return cls(
            session_id=session_id,
            status=h.get("status", "expired"),
            client_data=_loads(h.get("client_data"), {}),
            server_data=_loads(h.get("server_data"), {}),
            exited=h.get("exited") == "1",
            data_json=h.get("data") or "{}",
            reason=h.get("reason"),
            dispose_claim=h.get("dispose_claim"),
            ended_at=num("ended_at") if h.get("ended_at") else None,
            blobs_loaded=blobs_loaded,
            **student,
            **times,
        )


#: the fields of a session a student's request reads: all but the RLMS's initial data
#: (``client_data``/``server_data``, JSON of any size), which are read on first use
LIGHT_FIELDS = (
    "status",
    *STUDENT_FIELDS,
    *TIME_FIELDS,
    "exited",
    "data",
    "reason",
    "dispose_claim",
    "ended_at",
)


@dataclass(frozen=True)
class SessionState:
    """The few fields a status call needs."""

    status: str
    max_date: float
    last_poll: float
    exited: bool


SUBMITTED, RUNNING, DONE, FAILED = "submitted", "running", "done", "failed"
FINAL_STATES = (DONE, FAILED)


def error_info(code: str, cls: str, message: str) -> dict[str, str]:
    """The ``error`` of a failed task: ``{"code", "class", "message"}``."""
    return {"code": code, "class": cls, "message": message}


@dataclass
class TaskRecord:
    """One task as stored (decoded from JSON)."""

    task_id: str
    name: str
    session_id: str | None
    status: str
    pool: str = "default"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: dict[str, str] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stopping: bool = False
    progress: dict[str, Any] | None = None
    worker: str | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[str, str]) -> TaskRecord:
        def loads(key: str, default: Any) -> Any:
            value = raw.get(key)
            return default if value in (None, "") else json.loads(value)

        def number(key: str) -> float | None:
            value = raw.get(key)
            return float(value) if value else None

        return cls(
            task_id=task_id,
            name=raw.get("name", ""),
            session_id=raw.get("session") or None,
            status=raw.get("status", ""),
            pool=raw.get("pool") or "default",
            args=loads("args", []),
            kwargs=loads("kwargs", {}),
            result=loads("result", None),
            error=loads("error", None),
            data=loads("data", {}),
            stopping=raw.get("stopping") == "1",
            progress=loads("progress", None),
            worker=raw.get("worker") or None,
            created=number("created"),
            started=number("started"),
            finished=number("finished"),
        )
