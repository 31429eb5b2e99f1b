"""Fixtures of the task tests: a TaskStore on the session's real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from labruntime.store_tasks import TaskStore


class _KeyedRedis:
    """The two things TaskStore needs from the session layer's Store: a client and key()."""

    def __init__(self, client: redis.Redis, base: str) -> None:
        self.redis = client
        self.base = base

    def key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))


@pytest.fixture
def task_store(redis_url: str, redis_base: str) -> Iterator[TaskStore]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    try:
        yield TaskStore(_KeyedRedis(client, redis_base), expires=60)
    finally:
        client.close()
