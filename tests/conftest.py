"""Fixtures shared by the whole suite: one real Redis server for the session, keys apart per test.

- ``embedded_redis``: an :class:`~labruntime.store.embedded.EmbeddedRedis` in a temporary folder,
  started once for the test session and stopped at its end (no process left behind).
- ``redis_url``: its ``unix://`` URL (give it to WEBLAB_REDIS_URL).
- ``redis_base``: a WEBLAB_REDIS_BASE unique to the test, so tests never see each other's keys;
  the test's keys are deleted when it ends.

Sub-folders add their own fixtures in their own ``conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from labruntime.store.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real Redis server for the test session, stopped at the end."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.ensure_running()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(embedded_redis: EmbeddedRedis) -> str:
    """The URL of the test session's Redis (``unix:///.../redis.sock``)."""
    return embedded_redis.url


@pytest.fixture(scope="session")
def twin_here() -> None:
    """Skips the test, saying why, where the AVR twin (simavr, avr-gcc, the Arduino core's
    Optiboot source) cannot run; tools/test.sh installs all of it, so CI runs these tests."""
    from labruntime.drivers.sim.avr import twin_available

    ok, why = twin_available()
    if not ok:
        pytest.skip(f"the AVR twin cannot run here: {why}")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's Redis (decoded replies), closed afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_base(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are removed afterwards."""
    base = f"t{uuid.uuid4().hex[:10]}"
    yield base
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{base}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()
