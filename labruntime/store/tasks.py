"""Redis storage of tasks, workers and unique locks (every Redis call of the task layer).

Key layout (all under the store's prefix ``P``, e.g. ``lab:``)::

    P task:<id>                 hash: name, session, status, args, kwargs, result, error, data,
                                stopping ("0"/"1"), pool, lock, worker, created, started, finished
    P task:<id>:done            list, one element once the task is final (waiters BLMOVE it
                                onto itself, so any number of them wake without consuming it)
    P tasks:queue:<pool>        list of submitted task ids (LPUSH in, BLMOVE out: FIFO)
    P tasks:session:<sid>       zset of every task id of a session (score: creation time)
    P tasks:unfinished:<sid>    set of the session's task ids not yet done/failed
    P tasks:finished:<sid>      list of ids that just finished (dispose BLPOPs it)
    P tasks:dispose:<sid>       time of the first dispose call of the session
    P tasks:lock:global:<name>  unique lock: value is the holder (task id or "sync:<token>")
    P tasks:lock:user:<name>:<sid>
    P workers                   set of registered worker ids
    P worker:<wid>              the worker's lease (PX), value: JSON {host, pid, started}
    P worker:<wid>:running      set of task ids the worker runs
    P worker:<wid>:processing   list of ids taken from a queue and not yet claimed
    P worker:<wid>:lapsed       Redis time (ms) a reaper first found the worker's lease lapsed
    channel P worker:<wid>:stop messages: task ids to stop

``<sid>`` is the empty string for tasks started outside a session.

Exactly once: a worker BLMOVEs an id from the queue to its own processing list (one worker
gets it), then the CLAIM script turns ``submitted`` into ``running`` only if the task is still
``submitted`` (a finalized task is never started; one stopped before it started runs with
``stopping`` raised). A dead worker's ``running`` tasks
are marked failed (``worker-lost``), never re-run; ids it took but had not claimed go back to
the queue (they never started). Final states are written once: FINALIZE ignores a task that is
already final, so a late result cannot overwrite ``worker-lost`` or ``dispose-timeout``.

Outages: a worker whose lease lapsed is reaped only after REAP_GRACE seconds *of Redis time
seen by reapers* (from the first reaper pass that found it lapsed), unless its process is
seen gone on this host. Time during which Redis was down or unreachable for everyone is not
counted: when Redis comes back, a live worker renews its lease (and so keeps its running
tasks, and their results) before any reaper may fail them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from labruntime.errors import DeviceUnavailableError

from . import blocking
from .connection import Connection, guarded
from .records import TaskRecord, error_info
from .tasks_lua import (
    BEAT,
    CLAIM,
    ENQUEUE,
    FAIL_UNFINISHED,
    FINISH,
    HEARTBEAT,
    LAPSED,
    LOCK,
    LOCK_RENEW,
    PREAMBLE,
    REAP,
    STOP,
)

__all__ = ["REAP_GRACE", "Beat", "Reaped", "StopListener", "TaskStore", "worker_process_gone"]

log = logging.getLogger(__name__)

#: seconds a lapsed worker lease is given, counted from the first reaper that sees it lapsed,
#: before its running tasks fail ``worker-lost``: a live worker beats every 2 s, so after an
#: outage it renews well within this (worker lease 4 s + a reaper pass + this <= 10 s)
REAP_GRACE = 4.0
TAKE_BLOCK_MAX = 30.0  # seconds a blocking take may last (its connection's socket timeout: + 15)


def worker_process_gone(worker_id: str) -> bool:
    """True when the worker ``<host>:<pid>:<random>`` ran on this host and its process is
    gone (or a zombie): it can be reaped without waiting for REAP_GRACE."""
    host, _, rest = worker_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Iterable[Any]) -> dict[str, str]:
    items = [_text(v) for v in flat]
    return dict(zip(items[0::2], items[1::2], strict=True))


@dataclass(frozen=True)
class Beat:
    """What a worker's beat read (:meth:`TaskStore.beat`)."""

    stopping: list[str]  # ids of its running tasks flagged stopping
    processing: list[str]  # ids it took from a queue and has not claimed
    lapsed: list[str]  # registered workers whose lease is gone (its reaper pass's work)


@dataclass
class Reaped:
    """What a reaper pass did (:meth:`TaskStore.reap_lapsed`)."""

    failed: int = 0  # running tasks of dead workers failed ``worker-lost``
    waiting: int = 0  # lapsed workers not reaped yet (within REAP_GRACE)
    live: int = -1  # registered workers with a live lease (-1: not read)
    next_lapse: float | None = None  # seconds until the first live lease lapses


def _ids(value: Any) -> list[str]:
    return [_text(v) for v in value] if isinstance(value, list) else []  # cjson: {} when empty


@guarded
class TaskStore:
    """All Redis access of the task layer, on the lab's :class:`~.connection.Connection`.

    ``expires`` is WEBLAB_TASK_EXPIRES: how long a finished task stays readable. Every public
    method raises StoreUnavailableError when Redis cannot be reached.
    """

    def __init__(self, conn: Connection, expires: int = 3600) -> None:
        self._conn = conn
        self.prefix: str = conn.prefix
        self.expires = max(1, int(expires))
        self.outage = conn.outage  # background loops report Redis failures through it
        self._takers: dict[str, Any] = {}  # worker id -> its runners' blocking client
        self._takers_lock = threading.Lock()

    @property
    def _redis(self) -> Any:
        return self._conn.client

    def _script(self, body: str) -> Any:
        return self._conn.script(PREAMBLE + body)

    # -- keys -------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def lock_key(self, name: str, unique: str, session_id: str | None) -> str:
        if unique == "global":
            return self._k("tasks", "lock", "global", name)
        return self._k("tasks", "lock", "user", name, session_id or "")

    def stop_channel(self, worker_id: str) -> str:
        return self._k("worker", worker_id, "stop")

    # -- submitting ------------------------------------------------------------------------
    def enqueue(
        self,
        task_id: str,
        name: str,
        session_id: str | None,
        args_json: str,
        kwargs_json: str,
        pool: str = "default",
        lock: str | None = None,
        leases: list[str] | None = None,
    ) -> bool:
        """Store and queue a task. False (nothing stored) when ``lock`` is held.

        ``leases``: the keys of the device leases the task needs (``DeviceStore.lease_key``);
        the task is queued only if every one is live and open to new tasks, in the same
        atomic step, else DeviceUnavailableError (its worker stopped taking tasks)."""
        argv = [self.prefix, task_id, session_id or "", pool, lock or "", repr(time.time())]
        argv += ["name", name, "args", args_json, "kwargs", kwargs_json, "data", "{}"]
        done = int(self._script(ENQUEUE)(keys=list(leases or ()), args=argv))
        if done < 0:
            raise DeviceUnavailableError(
                f"task {name} was not queued: the worker holding its device(s) stopped taking "
                "new tasks (a `run-tasks` that drained its queue, or a worker stopping); "
                "start a long-running worker: `labruntime loop --device NAME`"
            )
        return bool(done)

    def get(self, task_id: str) -> TaskRecord | None:
        raw = self._redis.hgetall(self._k("task", task_id))
        return TaskRecord.from_hash(task_id, _pairs_dict(raw)) if raw else None

    def _get_many(self, ids: list[str]) -> list[TaskRecord]:
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(self._k("task", task_id))
        records = []
        for task_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                records.append(TaskRecord.from_hash(task_id, _pairs_dict(raw)))
        return records

    def session_tasks(self, session_id: str | None) -> list[TaskRecord]:
        """Every task of the session still stored, oldest first."""
        ids = [
            _text(i)
            for i in self._redis.zrange(self._k("tasks", "session", session_id or ""), 0, -1)
        ]
        return self._get_many(ids)

    def unfinished_ids(self, session_id: str | None) -> list[str]:
        return [
            _text(i) for i in self._redis.smembers(self._k("tasks", "unfinished", session_id or ""))
        ]

    def unfinished_tasks(self, session_id: str | None) -> list[TaskRecord]:
        records = self._get_many(self.unfinished_ids(session_id))
        return sorted(records, key=lambda r: (r.created or 0.0, r.task_id))

    def store_data(self, task_id: str, data_json: str) -> None:
        self._redis.hset(self._k("task", task_id), "data", data_json)

    def set_progress(self, task_id: str, progress_json: str) -> None:
        """Store a running task's progress (device operations report it)."""
        self._redis.hset(self._k("task", task_id), "progress", progress_json)

    def queue_length(self, pool: str = "default") -> int:
        return int(self._redis.llen(self._k("tasks", "queue", pool)))

    # -- workers ---------------------------------------------------------------------------
    def take(self, pool: str, worker_id: str, timeout: float) -> str | None:
        """Move the oldest queued id to the worker's processing list; block up to ``timeout``
        seconds (0: do not block), on a connection :meth:`unblock_takers` can wake."""
        src = self._k("tasks", "queue", pool)
        dst = self._k("worker", worker_id, "processing")
        if timeout <= 0:
            value = self._redis.lmove(src, dst, "RIGHT", "LEFT")
        else:
            block = min(timeout, TAKE_BLOCK_MAX)
            value = self._taker(worker_id).blmove(src, dst, block, "RIGHT", "LEFT")
        return None if value is None else _text(value)

    def _taker_name(self, worker_id: str) -> str:
        return f"labruntime-take-{worker_id}".replace(" ", "_")

    def _taker(self, worker_id: str) -> Any:
        """The client a worker's runners block on (its connections are named after it)."""
        with self._takers_lock:
            client = self._takers.get(worker_id)
        if client is None:
            name = self._taker_name(worker_id)
            client = self._conn.named_client(name, socket_timeout=TAKE_BLOCK_MAX + 15)
            with self._takers_lock:
                client = self._takers.setdefault(worker_id, client)
        return client

    def unblock_takers(self, worker_id: str) -> int:
        """End the blocking takes of the worker's runners now (they return no task): how a
        stopping worker wakes them instead of waiting for their timeout. Returns how many."""
        name = self._taker_name(worker_id)
        woken = 0
        for client in self._redis.client_list(_type="normal"):
            if client.get("name") == name:  # one not blocked now: CLIENT UNBLOCK says 0
                woken += int(self._redis.client_unblock(int(client["id"])))
        return woken

    def release_takers(self, worker_id: str) -> None:
        """Close the worker's blocking connections (the worker has stopped)."""
        with self._takers_lock:
            client = self._takers.pop(worker_id, None)
        if client is not None:
            client.close()

    def claim(self, task_id: str, worker_id: str, lease: float) -> TaskRecord | None:
        """``submitted`` -> ``running`` for this worker, or None if it must not run."""
        argv = [self.prefix, task_id, worker_id, repr(time.time()), int(lease * 1000)]
        raw = self._script(CLAIM)(args=argv)
        return TaskRecord.from_hash(task_id, _pairs(raw)) if raw else None

    def finish(
        self,
        task_id: str,
        status: str,
        *,
        worker_id: str = "",
        result_json: str = "",
        error: dict[str, str] | None = None,
        data_json: str = "",
    ) -> bool:
        """Write the final state, once. False when the task was already final (or moved to
        another worker)."""
        argv = [
            self.prefix,
            task_id,
            worker_id,
            status,
            result_json,
            json.dumps(error) if error else "",
            data_json,
            repr(time.time()),
            self.expires,
        ]
        return bool(self._script(FINISH)(args=argv))

    def stop(self, task_id: str, *, cancel_unstarted: bool = False) -> str | None:
        """Raise ``stopping``. Returns 'flagged' (not started yet: it will run with the flag
        raised, as in weblablib), 'finalized' (not started and ``cancel_unstarted``: failed
        ``stopped``, it never runs), 'running' (its worker was told) or None (already final or
        unknown)."""
        err = error_info("stopped", "TaskStopped", "the session ended before it started")
        argv = [self.prefix, task_id, repr(time.time()), self.expires, json.dumps(err)]
        argv.append("1" if cancel_unstarted else "0")
        value = self._script(STOP)(args=argv)
        return None if value is None else _text(value)

    def requeue(self, task_id: str, worker_id: str, pool: str = "default") -> None:
        """Give back an id the worker took but will not run (it is shutting down)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.lrem(self._k("worker", worker_id, "processing"), 1, task_id)
        pipe.rpush(self._k("tasks", "queue", pool), task_id)
        pipe.execute()

    def processing_ids(self, worker_id: str) -> list[str]:
        """Ids the worker took from a queue and has not claimed yet."""
        return [
            _text(i) for i in self._redis.lrange(self._k("worker", worker_id, "processing"), 0, -1)
        ]

    def retire(self, worker_id: str) -> int:
        """A worker leaving: drop its lease, fail what it still runs, requeue what it took."""
        self._redis.delete(self._k("worker", worker_id))
        return self.reap(worker_id, force=True)

    def stop_listener(self, worker_id: str) -> StopListener:
        """Subscribe to the worker's stop channel (do it before taking tasks)."""
        return StopListener(self._redis, self.stop_channel(worker_id))

    def heartbeat(self, worker_id: str, lease: float, info: dict[str, Any]) -> list[str]:
        """Renew the worker's lease and its tasks' lock leases; return ids flagged stopping."""
        argv = [self.prefix, worker_id, int(lease * 1000), json.dumps(info)]
        return [_text(i) for i in self._script(HEARTBEAT)(args=argv)]

    def beat(self, worker_id: str, lease: float, info: dict[str, Any]) -> Beat:
        """:meth:`heartbeat`, and what the worker's reaper pass needs (the ids it took and
        has not claimed, the lapsed workers), in one round trip."""
        argv = [self.prefix, worker_id, int(lease * 1000), json.dumps(info)]
        reply = json.loads(self._script(BEAT)(args=argv))
        return Beat(_ids(reply["stopping"]), _ids(reply["processing"]), _ids(reply["lapsed"]))

    def wake_stop_listener(self, worker_id: str) -> None:
        """Wake the worker's stop listener now (an empty message: no task to stop)."""
        self._redis.publish(self.stop_channel(worker_id), "")

    def workers(self) -> list[str]:
        return [_text(w) for w in self._redis.smembers(self._k("workers"))]

    def worker_alive(self, worker_id: str) -> bool:
        return bool(self._redis.exists(self._k("worker", worker_id)))

    def reap(self, worker_id: str, *, force: bool = False, grace: float | None = None) -> int:
        """If the worker's lease is gone (or ``force``), fail its running tasks with
        ``worker-lost`` and requeue what it took but never started. -1 if it is alive, or
        if its lease lapsed less than ``grace`` (default REAP_GRACE) seconds ago as seen by
        reapers and its process is not seen gone here (see the module docstring)."""
        err = error_info("worker-lost", "WorkerLost", f"the worker {worker_id} stopped or died")
        argv = [self.prefix, worker_id, repr(time.time()), self.expires, json.dumps(err)]
        grace_ms = int(1000 * (REAP_GRACE if grace is None else grace))
        gone = not force and worker_process_gone(worker_id)
        argv += ["1" if force else "0", grace_ms, "1" if gone else "0"]
        return int(self._script(REAP)(args=argv))

    def reap_dead(self, grace: float | None = None) -> int:
        """Reap every registered worker whose lease lapsed (see :meth:`reap`). Returns tasks
        failed."""
        return self.reap_lapsed(grace=grace).failed

    def reap_lapsed(self, lapsed: list[str] | None = None, grace: float | None = None) -> Reaped:
        """:meth:`reap` each registered worker whose lease lapsed (``lapsed``: as a beat just
        read them; None: read now, one round trip when nobody lapsed)."""
        outcome = Reaped()
        if lapsed is None:
            reply = self._script(LAPSED)(args=[self.prefix])
            ttl = int(reply[1])
            lapsed = [_text(w) for w in reply[2:]]
            outcome.live = int(reply[0]) - len(lapsed)
            outcome.next_lapse = ttl / 1000 if ttl >= 0 else None
        for wid in lapsed:
            count = self.reap(wid, grace=grace)
            if count > 0:
                log.warning("worker %s died: %d running task(s) marked worker-lost", wid, count)
            if count < 0:
                outcome.waiting += 1
            outcome.failed += max(count, 0)
        return outcome

    # -- waiting ---------------------------------------------------------------------------
    def wait_final(self, task_id: str, timeout: float) -> bool:
        """Block until the task is final or ``timeout`` (seconds, > 0) passes (on time: see
        :mod:`.blocking`). Wakes on the task's done list, without consuming it, so many
        waiters can share it."""
        key = self._k("task", task_id, "done")
        block = max(timeout, 0.001)
        return (
            blocking.call(self._redis, block, "BLMOVE", key, key, "RIGHT", "LEFT", block)
            is not None
        )

    def wait_session_event(self, session_id: str | None, timeout: float) -> bool:
        """Block until one of the session's tasks finishes (or ``timeout``, on time)."""
        key = self._k("tasks", "finished", session_id or "")
        block = max(timeout, 0.001)
        return blocking.call(self._redis, block, "BLPOP", key, block) is not None

    # -- dispose ---------------------------------------------------------------------------
    def dispose_started(self, session_id: str | None) -> float:
        """Time of the session's first dispose step (recorded now if this is the first)."""
        key = self._k("tasks", "dispose", session_id or "")
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, repr(now), nx=True, ex=self.expires)
        pipe.get(key)
        _, value = pipe.execute()
        return float(_text(value)) if value is not None else now

    def clear_dispose(self, session_id: str | None) -> None:
        self._redis.delete(self._k("tasks", "dispose", session_id or ""))

    def unfinished_counts(self, session_ids: list[str]) -> list[int]:
        """How many unfinished tasks each session has, in one round trip."""
        if not session_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.scard(self._k("tasks", "unfinished", session_id))
        return [int(n) for n in pipe.execute()]

    def clear_dispose_many(self, session_ids: list[str]) -> None:
        """:meth:`clear_dispose` of many sessions (one command)."""
        if session_ids:
            self._redis.delete(*(self._k("tasks", "dispose", sid) for sid in session_ids))

    def fail_unfinished(self, session_id: str | None, error: dict[str, str]) -> int:
        argv = [self.prefix, session_id or "", repr(time.time()), self.expires, json.dumps(error)]
        return int(self._script(FAIL_UNFINISHED)(args=argv))

    # -- unique locks for direct (synchronous) calls ----------------------------------------
    def lock(self, key: str, holder: str, lease: float) -> bool:
        return bool(self._script(LOCK)(args=[self.prefix, key, holder, int(lease * 1000)]))

    def renew_lock(self, key: str, holder: str, lease: float) -> bool:
        return bool(self._script(LOCK_RENEW)(args=[self.prefix, key, holder, int(lease * 1000)]))

    def unlock(self, key: str, holder: str) -> bool:
        return bool(self._script(LOCK_RENEW)(args=[self.prefix, key, holder, "0"]))


class StopListener:
    """The stop messages (task ids) sent to one worker, over pub/sub."""

    def __init__(self, client: Any, channel: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)

    def get(self, timeout: float) -> str | None:
        """The next task id to stop, or None after ``timeout`` seconds."""
        message = self._pubsub.get_message(timeout=timeout)
        if message is None or message.get("type") != "message":
            return None
        return _text(message["data"])

    def close(self) -> None:
        self._pubsub.close()


def _pairs_dict(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
