"""The Redis connection of one lab: the client, the key prefix, scripts and error mapping.

Every ``redis`` connection error becomes a :class:`~labruntime.errors.StoreUnavailableError`
naming the server and what to check (``_wrap``); in embedded mode a dead server is restarted.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from labruntime.errors import StoreUnavailableError

__all__ = ["Connection", "wrap"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def wrap(method: Callable[..., T]) -> Callable[..., T]:
    """Turn redis connection errors into StoreUnavailableError; heal the embedded server."""

    @functools.wraps(method)
    def wrapper(self: Connection, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if not self._heal():
                raise self._unavailable(error) from error
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise self._unavailable(error) from error

    return wrapper


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

    # -- connection -------------------------------------------------------------------------
    def _resolve_url(self) -> str:
        if self.url:
            return self.url
        from labruntime.embedded import EmbeddedRedisError, ensure_embedded_redis

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
    def redis(self) -> redis.Redis:
        """The client (``decode_responses=True``), connected on first use."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    url = self._resolve_url()
                    self._redis = redis.Redis.from_url(
                        url,
                        decode_responses=True,
                        socket_connect_timeout=3,
                        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                        health_check_interval=30,
                    )
        return self._redis

    def _heal(self) -> bool:
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

    def _unavailable(self, error: Exception) -> StoreUnavailableError:
        where = self.url or f"the embedded Redis in {self.instance_path}"
        return StoreUnavailableError(
            f"Redis is unavailable ({where}): {str(error).rstrip('.')}. Check that the server "
            "is running and WEBLAB_REDIS_URL is right; labruntime reconnects when it is back"
        )

    def close(self) -> None:
        """Close the connection pool (a new one opens on next use)."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._scripts.clear()

    def key(self, *parts: str) -> str:
        """A key under this lab's prefix: ``key("weblab", "live") == "B:weblab:live"``."""
        return ":".join((self.base, *parts))

    def pipeline(self, transaction: bool = True) -> Any:
        """A pipeline on the lab's connection."""
        return self.redis.pipeline(transaction=transaction)

    def _script(self, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(source)
        return script
