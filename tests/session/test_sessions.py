"""SessionManager on a real Store with a hand-driven clock: no Flask, no sleeping."""

from __future__ import annotations

import pytest

from labruntime.config import load_config
from labruntime.sessions.manager import SessionManager
from labruntime.sessions.start_request import StartRequest, parse_start_request
from labruntime.store.connection import Connection
from labruntime.store.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manager(redis_url, redis_base):
    def make(**config):
        cfg = load_config(
            {"SECRET_KEY": "k" * 16, "WEBLAB_USERNAME": "u", "WEBLAB_PASSWORD": "p" * 16, **config}
        )
        connection = Connection(redis_url, redis_base)
        made.append(connection)
        return SessionManager(SessionStore(connection), cfg, clock=Clock())

    made: list[Connection] = []
    yield make
    for connection in made:
        connection.close()


def start(manager: SessionManager, length: float = 100) -> str:
    request = StartRequest({}, {"priority.queue.slot.length": length}, "http://back")
    return manager.create(request).session_id


def test_should_finish_over_time(manager):
    sessions = manager(WEBLAB_TIMEOUT=15, WEBLAB_POLL_INTERVAL=5)
    sid = start(sessions, length=30)
    assert sessions.status(sid) == 5
    sessions.clock.now += 10
    assert sessions.poll(sid)
    sessions.clock.now += 13
    assert sessions.status(sid) == 5  # 13 s without polling < 15
    assert sessions.poll(sid)
    sessions.clock.now += 6.5  # 0.5 s left in the slot
    assert sessions.status(sid) == 1
    sessions.clock.now += 0.5
    assert sessions.status(sid) == -1


def test_poll_timeout_and_no_revival(manager):
    sessions = manager(WEBLAB_TIMEOUT=15)
    sid = start(sessions)
    sessions.clock.now += 16
    assert sessions.status(sid) == -1
    record = sessions.load(sid, poll=True)  # a late request does not bring it back
    assert not sessions.is_active(record, sessions.clock())
    assert sessions.status(sid) == -1


def test_timeout_disabled(manager):
    sessions = manager(WEBLAB_TIMEOUT=0)
    sid = start(sessions, length=1000)
    sessions.clock.now += 900
    assert sessions.status(sid) == 5
    assert sessions.clean(lambda s: None, lambda r: None) == 0


def test_cleaner_reasons_and_exactly_once(manager):
    sessions = manager(WEBLAB_TIMEOUT=15)
    slot, idle, alive = start(sessions, 10), start(sessions, 100), start(sessions, 100)
    ended = []
    sessions.clock.now += 12
    sessions.poll(alive)
    sessions.poll(slot)  # too late for the slot: its time is over
    assert sessions.clean(lambda s: None, lambda r: ended.append((r.session_id, r.reason))) == 1
    sessions.clock.now += 4  # idle: 16 s without a poll
    assert sessions.clean(lambda s: None, lambda r: ended.append((r.session_id, r.reason))) == 1
    assert ended == [(slot, "slot over"), (idle, "timeout")]
    assert sessions.clean(lambda s: None, lambda r: ended.append(r.session_id)) == 0
    assert sessions.status(alive) == 5


def test_busy_steps_retry_then_end(manager):
    sessions = manager()
    sid = start(sessions)
    busy = iter([3.0, None])
    ran = []
    outcome = sessions.dispose(sid, "rlms", lambda s: next(busy), ran.append)
    assert outcome.found and outcome.retry_in == 3.0 and not ran
    assert sessions.status(sid) == 1
    assert sessions.clean(lambda s: None, ran.append) == 0  # not due for 3 s
    sessions.clock.now += 3
    assert sessions.clean(lambda s: None, ran.append) == 1
    assert [r.session_id for r in ran] == [sid]
    again = sessions.dispose(sid, "rlms", lambda s: None, ran.append)
    assert again.done and len(ran) == 1  # idempotent: found, done, on_dispose not run again


def test_stale_claim_of_a_dead_process(manager):
    sessions = manager(WEBLAB_DISPOSE_TIMEOUT=10)
    sid = start(sessions)
    sessions.store.begin_dispose(sid, sessions.clock(), "rlms")
    assert sessions.store.claim_dispose(sid, f"deadbeef {sessions.clock()!r}")
    ran = []
    assert sessions.dispose(sid, "rlms", lambda s: None, ran.append).retry_in == 1.0
    sessions.clock.now += 71
    assert sessions.dispose(sid, "rlms", lambda s: None, ran.append).done
    assert ran == []  # the dead process had it; it is never run twice
    assert sessions.status(sid) == -1


def test_parse_start_request_forms():
    parsed = parse_start_request(
        {"client_initial_data": '{"a": 1}', "server_initial_data": "{}", "back": "http://b"}
    )
    assert parsed == StartRequest({"a": 1}, {}, "http://b")
    assert parse_start_request({}) == StartRequest({}, {}, None)
    with pytest.raises(ValueError, match="client_initial_data must be an object"):
        parse_start_request({"client_initial_data": "[1]"})


def test_failing_steps_do_not_block_the_end(manager, caplog):
    sessions = manager()
    sid = start(sessions)
    ran = []

    def broken(session_id):
        raise RuntimeError("worker table corrupt")

    assert sessions.dispose(sid, "rlms", broken, ran.append).done
    assert [r.session_id for r in ran] == [sid]
    assert "worker table corrupt" in caplog.text


def test_every_student_field_goes_from_the_rlms_to_the_user(manager):
    from labruntime.sessions.start_request import RLMS_KEYS
    from labruntime.sessions.users import make_user
    from labruntime.store.records import STUDENT_FIELDS

    assert set(RLMS_KEYS) | {"back"} == set(STUDENT_FIELDS)  # one list: nothing left unread
    sessions = manager()
    server_data = {key: f"{name}-sent" for name, key in RLMS_KEYS.items()}
    server_data["priority.queue.slot.length"] = 60
    server_data["request.locale"] = None  # not sent: None, never "None"
    request = StartRequest({"a": 1}, server_data, "http://rlms/back")
    sid = sessions.create(request).session_id
    user = make_user(sessions.store.load_session(sid), sessions)
    expected = {name: f"{name}-sent" for name in RLMS_KEYS}
    expected.update(locale=None, back="http://rlms/back")
    assert {name: getattr(user, name) for name in STUDENT_FIELDS} == expected
    assert user.session_id == sid and user.request_client_data == {"a": 1}
    assert user.start_date == sessions.clock.now and user.max_date == sessions.clock.now + 60
    assert user.experiment_id == "experiment_name-sent@category_name-sent"
