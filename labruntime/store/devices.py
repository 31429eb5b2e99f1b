"""Device leases, control requests and session revocation in Redis (the device layer's keys).

Key layout (``P`` is the lab's prefix, ``B:``)::

    P device:<name>           the holder's lease (PX): JSON {worker, token, host, pid, url,
                              since, closed}. Exactly one live holder per device name;
                              ``closed``: it drains and takes no new task (run-tasks).
    P device:<name>:token     fencing token: INCR on every new holder (never on a renewal)
    P device:<name>:req       list of control requests to the holder: JSON {id, kind}
    P device:<name>:ack:<id>  list holding the holder's JSON reply (short TTL)
    P device:<name>:safe      JSON of the last SafeReport and when it was taken
    P devices:used:<sid>      set of device names the session's tasks asked for
    P devices:revoked:<sid>   string: the session may start no more device tasks (TTL)

A holder renews its lease every second (the lease lasts LEASE seconds); a holder that dies by
kill -9 stops renewing, so its lease lapses. ``acquire(..., take_over=True)`` replaces a lease
whose holder the caller proved dead (same host, no such pid).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from . import blocking
from .connection import Connection, guarded

__all__ = ["DeviceStore"]

# KEYS: lease, token. ARGV: worker id, lease ms, info JSON (without token), take_over.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder = cjson.decode(cur)
  if holder['worker'] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, cur}
  end
  if ARGV[4] ~= '1' then return {0, cur} end
end
local token = redis.call('INCR', KEYS[2])
local info = cjson.decode(ARGV[3])
info['token'] = token
local text = cjson.encode(info)
redis.call('SET', KEYS[1], text, 'PX', ARGV[2])
return {1, text}
"""

# KEYS: lease. ARGV: worker id, lease ms. 1 if renewed, 0 if another holder has it, -1 if it
# lapsed (nobody holds it: the caller takes it again with acquire()).
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
if cjson.decode(cur)['worker'] ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: worker id.
_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['worker'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: worker id. The holder takes no new tasks: its lease stays (nobody else
# opens the device while it drains) with "closed": true, which admission and ENQUEUE refuse.
_CLOSE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local holder = cjson.decode(cur)
if holder['worker'] ~= ARGV[1] then return 0 end
holder['closed'] = true
redis.call('SET', KEYS[1], cjson.encode(holder), 'KEEPTTL')
return 1
"""

ACK_TTL = 60  # seconds a reply to a control request is kept


@guarded
class DeviceStore:
    """Device leases and control requests, on the lab's :class:`~.connection.Connection`.

    Every public method raises StoreUnavailableError when Redis cannot be reached.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.prefix: str = conn.prefix
        self.outage = conn.outage  # background loops report Redis failures through it

    @property
    def _redis(self) -> Any:
        return self._conn.client

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- leases ----------------------------------------------------------------------------
    def acquire(
        self,
        name: str,
        worker_id: str,
        lease: float,
        info: dict[str, Any],
        *,
        take_over: bool = False,
    ) -> tuple[bool, dict[str, Any]]:
        """Take the lease of ``name``. (True, our lease incl. token) or (False, the holder)."""
        payload = json.dumps({**info, "worker": worker_id, "since": time.time()})
        script = self._conn.script(_ACQUIRE)
        ok, text = script(
            keys=[self._k("device", name), self._k("device", name, "token")],
            args=[worker_id, int(lease * 1000), payload, "1" if take_over else "0"],
        )
        return bool(ok), json.loads(text)

    def renew(self, names: list[str], worker_id: str, lease: float) -> dict[str, str]:
        """Renew our leases; returns {name: "lost"} for a lease another holder has now and
        {name: "lapsed"} for one nobody holds (this process stalled past the lease)."""
        script = self._conn.script(_RENEW)
        failed: dict[str, str] = {}
        for name in names:
            got = script(keys=[self._k("device", name)], args=[worker_id, int(lease * 1000)])
            if int(got) != 1:
                failed[name] = "lapsed" if int(got) == -1 else "lost"
        return failed

    def lease_key(self, name: str) -> str:
        """The key of ``name``'s lease (a device task is queued only while it is open)."""
        return self._k("device", name)

    def close_admission(self, name: str, worker_id: str) -> bool:
        """Our lease of ``name`` stays, marked ``closed``: no new task is queued for it."""
        script = self._conn.script(_CLOSE)
        return bool(script(keys=[self._k("device", name)], args=[worker_id]))

    def release(self, name: str, worker_id: str) -> bool:
        script = self._conn.script(_RELEASE)
        return bool(script(keys=[self._k("device", name)], args=[worker_id]))

    def holder(self, name: str) -> dict[str, Any] | None:
        """The live holder of ``name`` (its lease JSON), or None."""
        text = self._redis.get(self._k("device", name))
        return json.loads(text) if text else None

    def holders(self, names: list[str]) -> dict[str, dict[str, Any] | None]:
        """The live holder of each name (one MGET)."""
        if not names:
            return {}
        values = self._redis.mget([self._k("device", n) for n in names])
        return {n: (json.loads(v) if v else None) for n, v in zip(names, values, strict=True)}

    # -- control requests ------------------------------------------------------------------
    def request(self, name: str, kind: str, **fields: Any) -> str:
        """Queue a control request (e.g. "safe") for the holder of ``name``; returns its id."""
        req_id = secrets.token_hex(8)
        message = json.dumps({"id": req_id, "kind": kind, "device": name, **fields})
        key = self._k("device", name, "req")
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, message)
        pipe.expire(key, ACK_TTL)  # requests nobody took in a minute are forgotten
        pipe.execute()
        return req_id

    def wait_reply(self, name: str, req_id: str, timeout: float) -> dict[str, Any] | None:
        """Block up to ``timeout`` s (on time: see :mod:`.blocking`) for the holder's reply to
        ``req_id`` (None: no reply)."""
        block = max(timeout, 0.01)
        got = blocking.call(
            self._redis, block, "BLPOP", self._k("device", name, "ack", req_id), block
        )
        return json.loads(got[1]) if got else None

    def next_request(self, names: list[str], timeout: float) -> dict[str, Any] | None:
        """Block up to ``timeout`` s for a request to any of ``names`` (the holder's loop; the
        server may end the wait up to 1/hz s late: it only bounds how soon the loop sees it
        must end)."""
        keys = [self._k("device", n, "req") for n in names]
        got = self._redis.blpop(keys, max(timeout, 0.01))
        return json.loads(got[1]) if got else None

    def reply(self, name: str, req_id: str, reply: dict[str, Any]) -> None:
        key = self._k("device", name, "ack", req_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(reply))
        pipe.expire(key, ACK_TTL)
        pipe.execute()

    def drop_requests(self, name: str) -> None:
        """Forget requests queued for a holder that is gone (a new holder starts clean)."""
        self._redis.delete(self._k("device", name, "req"))

    def record_safe(self, name: str, report: dict[str, Any]) -> None:
        """Keep the last SafeReport of ``name`` (for pages, tests and the HIL suites)."""
        text = json.dumps({**report, "at": time.time()})
        self._redis.set(self._k("device", name, "safe"), text)

    def last_safe(self, name: str) -> dict[str, Any] | None:
        text = self._redis.get(self._k("device", name, "safe"))
        return json.loads(text) if text else None

    # -- sessions --------------------------------------------------------------------------
    def mark_used(self, session_id: str | None, names: list[str], ttl: float) -> None:
        key = self._k("devices", "used", session_id or "")
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(key, *names)
        pipe.expire(key, max(1, int(ttl)))
        pipe.execute()

    def used(self, session_id: str | None) -> list[str]:
        key = self._k("devices", "used", session_id or "")
        return sorted(self._redis.smembers(key))

    def revoke(self, session_id: str | None, ttl: float) -> None:
        """The session may start no more device tasks (its dispose has begun)."""
        key = self._k("devices", "revoked", session_id or "")
        self._redis.set(key, "1", ex=max(1, int(ttl)))

    def revoked(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        return bool(self._redis.exists(self._k("devices", "revoked", session_id)))

    def forget_session(self, session_id: str | None) -> None:
        self._redis.delete(self._k("devices", "used", session_id or ""))
