"""The Redis connection of one lab, shared by every store: client, keys, scripts, errors.

The session, task and device stores (:mod:`.sessions`, :mod:`.tasks`, :mod:`.devices`) all
talk Redis through one :class:`Connection` and one dialect:

- keys: :meth:`Connection.key` puts every key under the lab's prefix (WEBLAB_REDIS_BASE);
- scripts: :meth:`Connection.script` registers a Lua script once per client;
- errors: :func:`guarded` (a class decorator on every store) turns a ``redis`` connection
  error into :class:`~labruntime.errors.StoreUnavailableError` naming the server and what to
  check; in embedded mode it first restarts a dead server and retries once. A server that
  cannot write its data (``MISCONF``: disk full) is "unavailable" the same way, naming the
  folder; it accepts writes again by itself once there is space, and so does labruntime;
- outages: :class:`OutageLog` (``Connection.outage``) is how background loops (workers,
  device holders) report Redis failures: one line when it starts, at most one per interval
  while it lasts, one when Redis is back; no traceback for an outage.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from labruntime.errors import StoreUnavailableError
from labruntime.redact import mask_url

from .session_cache import SessionCache, shared_cache

__all__ = ["Connection", "OutageLog", "guarded", "is_store_outage"]

log = logging.getLogger(__name__)
T = TypeVar("T")
C = TypeVar("C", bound=type)


class Connection:
    """The Redis connection of one lab: client, key prefix, scripts, error mapping.

    ``url`` None means the embedded server in ``instance_path`` (started on first use).
    """

    def __init__(self, url: str | None, base: str, instance_path: str | None = None) -> None:
        self.url = url
        self.base = base
        self.instance_path = instance_path
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()
        self._last_heal = 0.0
        self._scripts: dict[str, Any] = {}
        self._data_dir: str | None = None
        self._named: list[redis.Redis] = []
        self._server: str | None = None  # the URL the client connects to
        self._cache: SessionCache | None = None
        #: the outage reports of this process's background loops on this connection
        self.outage = OutageLog(self)

    # -- connection -------------------------------------------------------------------------
    def _resolve_url(self) -> str:
        if self.url:
            return self.url
        from .embedded import EmbeddedRedisError, ensure_embedded_redis

        if not self.instance_path:
            raise StoreUnavailableError(
                "no WEBLAB_REDIS_URL and no instance folder for the embedded Redis: "
                "set WEBLAB_REDIS_URL"
            )
        try:
            return ensure_embedded_redis(self.instance_path)
        except EmbeddedRedisError as error:
            raise StoreUnavailableError(f"the embedded Redis cannot start: {error}") from error

    @property
    def client(self) -> redis.Redis:
        """The client (``decode_responses=True``), connected on first use (stores only)."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._server = self._resolve_url()
                    self._redis = self._new_client(self._server)
        return self._redis

    def session_cache(self, prefix: str) -> SessionCache:
        """The process's :class:`~.session_cache.SessionCache` of the keys under ``prefix``
        on this server (shared by every connection of this lab in the process)."""
        if self._cache is None:
            self.client  # noqa: B018 - resolves the server (starts the embedded one)
            server = self._server or ""

            def connect() -> Any:
                listener = self._new_client(server, protocol=3, socket_timeout=None)
                connection = listener.connection_pool.make_connection()
                connection.connect()
                return connection

            self._cache = shared_cache(server, prefix, connect)
        return self._cache

    @staticmethod
    def _new_client(url: str, **extra: Any) -> redis.Redis:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 3,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
            "health_check_interval": 30,
        }
        options.update(extra)
        return redis.Redis.from_url(url, **options)

    def named_client(self, name: str, socket_timeout: float) -> redis.Redis:
        """A client of its own whose connections carry ``name`` (CLIENT SETNAME at each
        connect), for long blocking calls (shorter than ``socket_timeout`` seconds: redis-py's
        default, 5 s, would cut them) another thread may end with CLIENT UNBLOCK; closed with
        this connection."""
        client = self._new_client(
            self._resolve_url(), client_name=name, socket_timeout=socket_timeout
        )
        with self._lock:
            self._named.append(client)
        return client

    def close(self) -> None:
        """Close the connection pool (a new one opens on next use), the named clients and the
        session cache's listener."""
        with self._lock:
            named, self._named = self._named, []
        for client in named:
            client.close()
        cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()  # shared: another connection of the lab starts it again on use
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._scripts.clear()

    def key(self, *parts: str) -> str:
        """A key under this lab's prefix: ``key("weblab", "live") == "B:weblab:live"``."""
        return ":".join((self.base, *parts))

    @property
    def prefix(self) -> str:
        """What every key of this lab starts with: ``B:``."""
        return self.base + ":"

    def pipeline(self, transaction: bool = True) -> Any:
        """A pipeline on the lab's connection."""
        return self.client.pipeline(transaction=transaction)

    def script(self, source: str) -> Any:
        """The Lua ``source`` registered on the current client (cached; EVALSHA on call)."""
        client = self.client
        script = self._scripts.get(source)
        if script is None or script.registered_client is not client:
            script = self._scripts[source] = client.register_script(source)
        return script

    @property
    def where(self) -> str:
        """The server, for messages: the URL with its password masked, or the embedded one."""
        if not self.url:
            return f"the embedded Redis in {self.instance_path}"
        return mask_url(self.url)

    def unavailable(self, error: Exception) -> StoreUnavailableError:
        """The StoreUnavailableError for a redis connection ``error`` (or a MISCONF one)."""
        if _is_misconf(error):
            return StoreUnavailableError(
                f"Redis cannot write its data: disk full in {self.data_dir()} "
                f"({_first_line(error)}). Free space there; labruntime carries on by itself "
                "once Redis can write again"
            )
        return StoreUnavailableError(
            f"Redis is unavailable ({self.where}): {str(error).rstrip('.')}. Check that the "
            "server is running and WEBLAB_REDIS_URL is right; labruntime reconnects when it "
            "is back"
        )

    def data_dir(self) -> str:
        """The folder where the server writes its data (for messages)."""
        if not self.url:
            return os.path.join(self.instance_path or "?", "redis")
        if self._data_dir is None:
            try:  # a read: allowed even when the server cannot write
                answer = self.client.config_get("dir")
                self._data_dir = str(answer.get("dir") or "") or "the Redis server's data folder"
            except redis.RedisError:
                return f"the data folder of {self.where}"
        return self._data_dir

    def heal(self) -> bool:
        """Embedded mode: restart a dead server (at most every 2 s). True if worth retrying."""
        if self.url or time.monotonic() - self._last_heal < 2.0:
            return False
        self._last_heal = time.monotonic()
        try:
            self._resolve_url()
        except StoreUnavailableError:
            return False
        log.warning("the embedded Redis was not answering; it has been started again")
        return True

    def ping(self) -> bool:
        """True when the server answers (raises StoreUnavailableError when it does not)."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if not self.heal():
                raise self.unavailable(error) from error
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self.unavailable(error) from error


class _HasConnection(Protocol):
    _conn: Connection


def _is_misconf(error: BaseException) -> bool:
    """A refused write because the server cannot persist (disk full, read-only folder)."""
    return isinstance(error, redis.ResponseError) and "MISCONF" in str(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    start = text.find("MISCONF")
    return (text[start:] if start >= 0 else text)[:200].rstrip(".")


def is_store_outage(error: BaseException) -> bool:
    """True for Redis being unreachable or unable to write, mapped or not (no traceback)."""
    return isinstance(
        error, StoreUnavailableError | redis.ConnectionError | redis.TimeoutError
    ) or _is_misconf(error)


class OutageLog:
    """Rate-limited reports of Redis failures from background loops, one per connection.

    ``failed(what, error)``: the first failure logs one warning, later ones at most one line
    per ``interval`` seconds (how long it has lasted, how many failures); an error that is
    not an outage logs its traceback, also rate-limited. ``ok()`` after failures logs one
    line saying Redis is back and how long it was out.
    """

    def __init__(self, conn: Connection | None = None, interval: float = 30.0) -> None:
        self._conn = conn
        self.interval = interval
        self._lock = threading.Lock()
        self.since: float | None = None  # monotonic time of the first failure of this outage
        self._last_line = 0.0
        self._last_failure = 0.0
        self._failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, what: str, error: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            if self.since is not None and now - self._last_failure > self.interval:
                self.since, self._failures = None, 0  # nobody said ok(): an old outage
            first = self.since is None
            if first:
                self.since = now
            self._failures += 1
            self._last_failure = now
            if not first and now - self._last_line < self.interval:
                return
            self._last_line = now
            failures, lasted = self._failures, now - (self.since or now)
        outage = is_store_outage(error)
        message = str(error) if isinstance(error, StoreUnavailableError) else None
        if outage and message is None and self._conn is not None:
            message = str(self._conn.unavailable(error))  # type: ignore[arg-type]
        if first:
            log.warning("%s: %s; retrying", what, message or error, exc_info=not outage)
        else:
            log.warning(
                "%s: still failing after %.0f s (%d failures): %s",
                what,
                lasted,
                failures,
                message or error,
                exc_info=not outage,
            )

    def ok(self) -> None:
        if self.since is None:
            return
        with self._lock:
            since, failures = self.since, self._failures
            self.since, self._failures, self._last_line = None, 0, 0.0
        if since is not None:
            log.warning(
                "Redis is reachable again after %.1f s (%d failures)",
                time.monotonic() - since,
                failures,
            )


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: _HasConnection, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except redis.ResponseError as error:
            if _is_misconf(error):
                raise self._conn.unavailable(error) from error
            raise
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if not self._conn.heal():
                raise self._conn.unavailable(error) from error
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._conn.unavailable(error) from error
        except redis.ResponseError as error:
            if _is_misconf(error):
                raise self._conn.unavailable(error) from error
            raise

    return wrapper


def guarded(cls: C) -> C:
    """Class decorator of a store (an object with ``_conn``): each public method maps redis
    connection errors to StoreUnavailableError, healing the embedded server first."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, _guard(value))
    return cls
