"""Sessions in Redis: :class:`SessionStore`, its Lua scripts and the session id check.

The records it returns (:class:`~.records.SessionRecord`...) are in :mod:`.records`.

Costs: a student's request is one EVALSHA (poll + read the small fields, as one JSON
string; the RLMS's initial data only when the lab reads it, one HMGET); a status, or a bulk
status of up to 500 sessions, is one EVALSHA of HMGETs; a cleaner pass handles its sessions in
batches, each step of a batch one round trip (``*_many``, :meth:`SessionStore.schedule`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .connection import Connection, guarded
from .records import LIGHT_FIELDS, SessionRecord, SessionState
from .session_cache import SessionCache

__all__ = ["POLL_WINDOW", "SessionStore", "poll_window", "valid_session_id"]

#: seconds: a student's polls closer than this to the last one recorded are not written again
#: (nor is their session read again from Redis while no change was signalled: session_cache)
POLL_WINDOW = 1.0


def poll_window(timeout: float) -> float:
    """The poll window for WEBLAB_TIMEOUT ``timeout``: POLL_WINDOW, at most a tenth of it."""
    return min(POLL_WINDOW, timeout / 10) if timeout > 0 else POLL_WINDOW


# Session ids are create_token() strings; anything else (":", "*", spaces, huge) is unknown.
_SESSION_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def valid_session_id(session_id: str) -> bool:
    """True for a string that may be a session id (others are never looked up)."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


# KEYS: session hash, live zset. ARGV: now ("": no poll), timeout, session id, what to read:
# "light" (LIGHT_FIELDS), "full" (LIGHT_FIELDS + _BLOB_FIELDS), both as one JSON array (a
# single bulk reply to parse), else "0" (the reply only says whether the session exists);
# optional ARGV[5]: the poll window, a poll less than that after the last one is not written
# (a write would make every web process forget the session, see session_cache).
_BLOB_FIELDS = ("client_data", "server_data")


def _lua_list(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{name}'" for name in names)


_POLL_AND_GET = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {} end
if status == 'active' and ARGV[1] ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'max_date', 'last_poll', 'exited')
  local now = tonumber(ARGV[1]); local timeout = tonumber(ARGV[2])
  local max_date = tonumber(f[1]); local last_poll = tonumber(f[2])
  if f[3] ~= '1' and now < max_date and (timeout <= 0 or now - last_poll <= timeout)
     and now - last_poll >= tonumber(ARGV[5] or '0') then
    redis.call('HSET', KEYS[1], 'last_poll', ARGV[1])
    local score = max_date
    if timeout > 0 and now + timeout < score then score = now + timeout end
    redis.call('ZADD', KEYS[2], score, ARGV[3])
  end
end
if ARGV[4] == 'light' then return cjson.encode(redis.call('HMGET', KEYS[1], unpack(LIGHT))) end
if ARGV[4] == 'full' then return cjson.encode(redis.call('HMGET', KEYS[1], unpack(FULL))) end
return {'status', status}
"""
_POLL_AND_GET = (
    f"local LIGHT = {{{_lua_list(LIGHT_FIELDS)}}}\n"
    f"local FULL = {{{_lua_list(LIGHT_FIELDS + _BLOB_FIELDS)}}}\n"
) + _POLL_AND_GET

# KEYS: the cleaner lease. ARGV: token, lease ms. -1: the caller leads (taken or renewed),
# else the ms left on another cleaner's lease.
_LEAD_CLEANER = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return -1
end
return redis.call('PTTL', KEYS[1])
"""
# KEYS: the cleaner lease. ARGV: token. Deleted only by its holder.
_RELEASE_CLEANER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: session hash, live zset. ARGV: now, reason, session id.
_BEGIN_DISPOSE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'disposing', 'disposing_since', ARGV[1],
             'reason', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
  return 'started'
end
return status
"""

# KEYS: session hashes. Returns "status,max_date,last_poll,exited" of each, joined by ";", as
# one string: one reply to parse instead of 2,000 makes a 500-session bulk status ~5x cheaper
# on the client (the pure-Python RESP parser dominates otherwise).
_STATES = """
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'status', 'max_date', 'last_poll', 'exited')
  out[i] = (f[1] or '') .. ',' .. (f[2] or '') .. ',' .. (f[3] or '') .. ',' .. (f[4] or '')
end
return table.concat(out, ';')
"""

# A cleaner pass's batch of begin_dispose, in one call. KEYS: live zset, session hashes.
# ARGV: now, "1" to mark the first expiry of a session still active (once:expiry_detected),
# then a session id and a reason per hash. Returns one JSON array: per session, [what
# begin_dispose says ("started", "missing" or the status it had), 1 if its expiry was marked
# now, its whole hash as a flat array after the step (empty when missing or expired)].
_BEGIN_DISPOSE_MANY = """
local now, mark = ARGV[1], ARGV[2]
local out = {}
for i = 2, #KEYS do
  local key, sid, reason = KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]
  local status = redis.call('HGET', key, 'status')
  local begun, first, h = 'missing', 0, {}
  if not status then
    redis.call('ZREM', KEYS[1], sid)
  elseif status == 'active' then
    if mark == '1' and redis.call('HSETNX', key, 'once:expiry_detected', '1') == 1 then
      first = 1
    end
    redis.call('HSET', key, 'status', 'disposing', 'disposing_since', now, 'reason', reason)
    redis.call('ZADD', KEYS[1], now, sid)
    begun = 'started'
  else
    begun = status
  end
  if begun == 'expired' then
    redis.call('ZREM', KEYS[1], sid)
  elseif status then
    h = redis.call('HGETALL', key)
  end
  out[#out + 1] = {begun, first, h}
end
return cjson.encode(out)
"""

# KEYS: session hashes. ARGV: a claim per hash. HSETNX each, never on a session that is gone;
# returns "1"/"0" per session, as one string.
_CLAIM_MANY = """
local won = {}
for i, key in ipairs(KEYS) do
  local ok = 0
  if redis.call('EXISTS', key) == 1 then
    ok = redis.call('HSETNX', key, 'dispose_claim', ARGV[i])
  end
  won[i] = tostring(ok)
end
return table.concat(won)
"""

# KEYS: session hash. ARGV: claim. HSETNX, but never on a session that is gone.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'dispose_claim', ARGV[1])
"""

# KEYS: session hashes. ARGV: field. Per key: 1 the first time the field is set (never on a
# session that is gone), else 0.
_MARK_ONCE = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then out[i] = 0
  else out[i] = redis.call('HSETNX', key, ARGV[1], '1') end
end
return out
"""

# KEYS: session hash. ARGV: field, value... ; writes only if the session still exists.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


@guarded
class SessionStore:
    """The sessions of one lab, on its :class:`~.connection.Connection`.

    Every public method raises StoreUnavailableError when Redis cannot be reached.
    """

    def __init__(self, conn: Connection, *, remember: bool = True) -> None:
        self._conn = conn
        self._remember = remember  # WEBLAB_SESSION_CACHE: students' reads may be hits
        self._cache_prefix = self._session_key("")

    @property
    def _redis(self) -> Any:
        return self._conn.client

    @property
    def cache(self) -> SessionCache:
        """What this process remembers of the sessions (see :mod:`.session_cache`); asked of
        the connection each time, so that closing the connection closes it."""
        return self._conn.session_cache(self._cache_prefix)

    @contextmanager
    def _changing(self, session_ids: Iterable[str]) -> Iterator[None]:
        """Around a write to these sessions: this process forgets them before and after."""
        if not self._remember:
            yield
            return
        ids = list(session_ids)
        self.cache.forget(ids)
        try:
            yield
        finally:
            self.cache.forget(ids)

    def _key(self, *parts: str) -> str:
        return self._conn.key(*parts)

    def _pipeline(self) -> Any:
        return self._conn.pipeline()

    def _session_key(self, session_id: str) -> str:
        return self._key("weblab", "session", session_id)

    @property
    def _live_key(self) -> str:
        return self._key("weblab", "live")

    # -- sessions ---------------------------------------------------------------------------
    def create_session(self, record: SessionRecord, *, check_at: float, ttl: float) -> None:
        """Write a new session and schedule the cleaner's look at it (one round trip)."""
        pipe = self._pipeline()
        key = self._session_key(record.session_id)
        pipe.hset(key, mapping=record.to_hash())
        pipe.expire(key, max(1, int(ttl)))
        pipe.zadd(self._live_key, {record.session_id: check_at})
        with self._changing([record.session_id]):
            pipe.execute()

    def load_session(
        self, session_id: str, *, poll_at: float | None = None, timeout: float = 0.0
    ) -> SessionRecord | None:
        """The whole session, or None. With ``poll_at``, also records a poll (same round
        trip)."""
        if not valid_session_id(session_id):
            return None
        if poll_at is None:
            h = self._redis.hgetall(self._session_key(session_id))
            return SessionRecord.from_hash(session_id, h) if h else None
        record = self._load(session_id, poll_at, timeout, full=True)
        if record is not None:
            record.blobs_loaded = True
        return record

    def load_student(
        self, session_id: str, *, poll_at: float | None = None, timeout: float = 0.0
    ) -> SessionRecord | None:
        """What a student's request needs (:data:`~.records.LIGHT_FIELDS`: the RLMS's initial
        data is left out, see :meth:`load_blobs`), or None; one round trip, recording a poll
        when ``poll_at`` is given. The reply is one JSON string, whatever the fields."""
        if not valid_session_id(session_id):
            return None
        if not self._remember:  # every request reads Redis and records its poll
            return self._load(session_id, poll_at, timeout, full=False)
        window = poll_window(timeout)
        cache = self.cache
        hit: SessionRecord | None = cache.get(session_id, window)
        if hit is not None and (poll_at is None or poll_at - hit.last_poll < window):
            return copy.copy(hit)  # no round trip: nothing changed, the poll is recent
        version = cache.version()
        record = self._load(session_id, poll_at, timeout, full=False, window=window)
        if record is not None:
            cache.put(session_id, copy.copy(record), version)
        return record

    def _load(
        self,
        session_id: str,
        poll_at: float | None,
        timeout: float,
        *,
        full: bool,
        window: float = 0.0,
    ) -> SessionRecord | None:
        names = LIGHT_FIELDS + _BLOB_FIELDS if full else LIGHT_FIELDS
        now = "" if poll_at is None else repr(poll_at)
        reply = self._conn.script(_POLL_AND_GET)(
            keys=[self._session_key(session_id), self._live_key],
            args=[now, repr(timeout), session_id, "full" if full else "light", repr(window)],
        )
        if not reply:
            return None
        values = json.loads(reply)
        h = {k: v for k, v in zip(names, values, strict=True) if isinstance(v, str)}
        return SessionRecord.from_hash(session_id, h, blobs_loaded=False)

    def load_blobs(self, record: SessionRecord) -> None:
        """Read the RLMS's initial data into a record from :meth:`load_student` (one round
        trip; a session gone meanwhile leaves them empty)."""
        if record.blobs_loaded or not valid_session_id(record.session_id):
            return
        client, server = self._redis.hmget(self._session_key(record.session_id), _BLOB_FIELDS)
        full = SessionRecord.from_hash(
            record.session_id, {"client_data": client or "", "server_data": server or ""}
        )
        record.client_data, record.server_data = full.client_data, full.server_data
        record.blobs_loaded = True

    def poll(self, session_id: str, *, now: float, timeout: float) -> bool:
        """Record a poll; False when the session does not exist."""
        if not valid_session_id(session_id):
            return False
        with self._changing([session_id]):
            reply = self._conn.script(_POLL_AND_GET)(
                keys=[self._session_key(session_id), self._live_key],
                args=[repr(now), repr(timeout), session_id, "0"],
            )
        return bool(reply)

    def session_states(self, session_ids: Iterable[str]) -> list[SessionState | None]:
        """Status fields of many sessions in one round trip (one Lua call)."""
        ids = list(session_ids)
        keys = [self._session_key(i) for i in ids if valid_session_id(i)]
        packed = self._conn.script(_STATES)(keys=keys).split(";") if keys else []
        found = iter(packed)
        states: list[SessionState | None] = []
        for session_id in ids:
            if not valid_session_id(session_id):
                states.append(None)
                continue
            item = next(found)
            status, max_date, last_poll, exited = item.split(",")
            if not status:
                states.append(None)
            else:
                states.append(
                    SessionState(status, float(max_date or 0), float(last_poll or 0), exited == "1")
                )
        return states

    def save_data(self, session_id: str, data_json: str) -> bool:
        """Replace the lab's data of a session; False if the session is gone."""
        if not valid_session_id(session_id):
            return False
        script = self._conn.script(_SET_IF_EXISTS)
        with self._changing([session_id]):
            return bool(script(keys=[self._session_key(session_id)], args=["data", data_json]))

    def mark_exited(self, session_id: str, now: float) -> bool:
        """The student logged out: status says -1 and the cleaner looks at it now."""
        if not valid_session_id(session_id):
            return False
        script = self._conn.script(_SET_IF_EXISTS)
        with self._changing([session_id]):
            done = bool(script(keys=[self._session_key(session_id)], args=["exited", "1"]))
        if done:
            self._redis.zadd(self._live_key, {session_id: now}, xx=True)
        return done

    def begin_dispose(self, session_id: str, now: float, reason: str) -> str:
        """Move an active session to "disposing". Returns "started", "missing" or its status."""
        if not valid_session_id(session_id):
            return "missing"
        with self._changing([session_id]):
            return self._conn.script(_BEGIN_DISPOSE)(
                keys=[self._session_key(session_id), self._live_key],
                args=[repr(now), reason, session_id],
            )

    def mark_once(self, session_ids: Iterable[str], name: str) -> list[str]:
        """The sessions on which ``name`` is marked now for the first time (never one that is
        gone), in one round trip: an event logged once per session, whatever the number of
        processes."""
        ids = [i for i in session_ids if valid_session_id(i)]
        if not ids:
            return []
        script = self._conn.script(_MARK_ONCE)
        marked = script(keys=[self._session_key(i) for i in ids], args=[f"once:{name}"])
        return [i for i, first in zip(ids, marked, strict=True) if first]

    def claim_dispose(self, session_id: str, claim: str) -> bool:
        """Atomically win the right to run on_dispose (exactly one caller ever wins)."""
        script = self._conn.script(_CLAIM)
        with self._changing([session_id]):
            return bool(script(keys=[self._session_key(session_id)], args=[claim]))

    # -- a cleaner pass, in batches: a few round trips for any number of sessions -----------
    def begin_dispose_many(
        self, items: list[tuple[str, str]], now: float, *, mark_expiry: bool
    ) -> list[tuple[str, SessionRecord | None, bool]]:
        """:meth:`begin_dispose` of many ``(session id, reason)`` in one round trip. Per item:
        what it says, the whole record after the step (None when missing or expired), and
        True the first time its expiry was marked (``mark_expiry``: see :meth:`mark_once`)."""
        items = [(sid, reason) for sid, reason in items if valid_session_id(sid)]
        if not items:
            return []
        keys = [self._live_key] + [self._session_key(sid) for sid, _ in items]
        args = [repr(now), "1" if mark_expiry else "0"]
        for sid, reason in items:
            args += [sid, reason]
        with self._changing(sid for sid, _ in items):
            reply = json.loads(self._conn.script(_BEGIN_DISPOSE_MANY)(keys=keys, args=args))
        out: list[tuple[str, SessionRecord | None, bool]] = []
        for (sid, _), (begun, first, flat) in zip(items, reply, strict=True):
            h = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}
            record = SessionRecord.from_hash(sid, h) if h else None
            out.append((begun, record, bool(first)))
        return out

    def claim_dispose_many(self, claims: dict[str, str]) -> set[str]:
        """:meth:`claim_dispose` of many sessions ({id: claim}) in one round trip: the ids
        won."""
        ids = list(claims)
        if not ids:
            return set()
        keys = [self._session_key(sid) for sid in ids]
        with self._changing(ids):
            won = self._conn.script(_CLAIM_MANY)(keys=keys, args=[claims[sid] for sid in ids])
        return {sid for sid, flag in zip(ids, won, strict=True) if flag == "1"}

    def finish_dispose_many(self, session_ids: list[str], now: float, keep_for: float) -> None:
        """:meth:`finish_dispose` of many sessions in one round trip."""
        if not session_ids:
            return
        pipe = self._conn.pipeline(transaction=False)
        for session_id in session_ids:
            key = self._session_key(session_id)
            pipe.hset(key, mapping={"status": "expired", "ended_at": repr(now)})
            pipe.expire(key, max(1, int(keep_for)))
        pipe.zrem(self._live_key, *session_ids)
        with self._changing(session_ids):
            pipe.execute()

    def schedule(self, at: dict[str, float], forget: list[str] | None = None) -> None:
        """Ask the cleaner to look at each session of ``at`` again then, and drop ``forget``
        from its set (their records are gone), in one round trip."""
        if not at and not forget:
            return
        pipe = self._conn.pipeline(transaction=False)
        if at:
            pipe.zadd(self._live_key, at)
        if forget:
            pipe.zrem(self._live_key, *forget)
        pipe.execute()

    def reschedule(self, session_id: str, at: float) -> None:
        """Ask the cleaner to look at a session again at ``at``."""
        self._redis.zadd(self._live_key, {session_id: at})

    def finish_dispose(self, session_id: str, now: float, keep_for: float) -> None:
        """The session becomes an expired user, kept ``keep_for`` seconds."""
        key = self._session_key(session_id)
        pipe = self._pipeline()
        pipe.hset(key, mapping={"status": "expired", "ended_at": repr(now)})
        pipe.expire(key, max(1, int(keep_for)))
        pipe.zrem(self._live_key, session_id)
        with self._changing([session_id]):
            pipe.execute()

    def forget_live(self, session_id: str) -> None:
        """Drop a session id from the cleaner's set (its record is gone)."""
        self._redis.zrem(self._live_key, session_id)

    def due_sessions(self, now: float, limit: int = 500) -> list[str]:
        """Session ids the cleaner must look at now."""
        return self._redis.zrangebyscore(self._live_key, "-inf", repr(now), start=0, num=limit)

    def due_and_next(self, now: float, limit: int) -> tuple[list[str], float | None]:
        """:meth:`due_sessions` and :meth:`next_due` in one round trip."""
        pipe = self._conn.pipeline(transaction=False)
        pipe.zrangebyscore(self._live_key, "-inf", repr(now), start=0, num=limit)
        pipe.zrange(self._live_key, 0, 0, withscores=True)
        due, first = pipe.execute()
        return due, float(first[0][1]) if first else None

    def lead_cleaner(self, token: str, lease: float) -> float | None:
        """Take or renew the lab's cleaner lease for ``token`` (``lease`` s): None when
        ``token`` leads, else the seconds left on the leader's lease (one round trip)."""
        left = int(
            self._conn.script(_LEAD_CLEANER)(
                keys=[self._key("weblab", "cleaner")], args=[token, int(lease * 1000)]
            )
        )
        return None if left == -1 else max(left, 0) / 1000

    def cleaner_led(self) -> float:
        """Seconds left on the lab's cleaner lease (0: no web process leads the cleaning)."""
        left = int(self._redis.pttl(self._key("weblab", "cleaner")))
        return max(left, 0) / 1000

    def release_cleaner(self, token: str) -> None:
        """Give the cleaner lease up if ``token`` holds it (another cleaner takes it)."""
        self._conn.script(_RELEASE_CLEANER)(keys=[self._key("weblab", "cleaner")], args=[token])

    def next_due(self) -> float | None:
        """When the cleaner must next look (None: no live session)."""
        first = self._redis.zrange(self._live_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def live_session_ids(self) -> list[str]:
        """Every session id still live (active or disposing)."""
        return self._redis.zrange(self._live_key, 0, -1)

    def set_fake_session(self, session_id: str) -> None:
        """Remember the session made by ``fake new``."""
        self._redis.set(self._key("weblab", "fake"), session_id)

    def get_fake_session(self) -> str | None:
        """The session made by the last ``fake new``, if any."""
        return self._redis.get(self._key("weblab", "fake"))
