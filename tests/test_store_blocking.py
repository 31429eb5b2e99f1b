"""store/blocking: a blocking command's timeout ends on time although the embedded Redis's timer
ticks once a second (``hz 1``), and the connection goes back to the pool clean."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from labruntime.store import blocking
from labruntime.store.embedded import EmbeddedRedis


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


def test_the_embedded_server_ticks_once_a_second(embedded_redis: EmbeddedRedis) -> None:
    assert "hz 1" in embedded_redis.conffile.read_text().splitlines()
    client = redis.Redis.from_url(embedded_redis.url, decode_responses=True)
    try:
        assert client.config_get("hz") == {"hz": "1"}
    finally:
        client.close()


def test_a_wait_that_times_out_ends_near_its_deadline(client: redis.Redis, redis_base: str) -> None:
    key = f"{redis_base}:empty"
    for _ in range(3):  # at hz 1 the server alone would end each one up to 1 s late
        began = time.monotonic()
        assert blocking.call(client, 0.3, "BLPOP", key, 0.3) is None
        took = time.monotonic() - began
        assert 0.29 <= took < 0.75, took
    # every PING was answered and read: the connection is clean for the next command
    client.set(f"{redis_base}:k", "v")
    assert client.get(f"{redis_base}:k") == "v"
    assert len(client.connection_pool._available_connections) == 1


def test_an_answered_wait_returns_the_reply_as_redis_py_parses_it(
    client: redis.Redis, redis_base: str
) -> None:
    key = f"{redis_base}:list"
    timer = threading.Timer(0.1, lambda: client.rpush(key, "a"))
    timer.start()
    try:
        began = time.monotonic()
        got = blocking.call(client, 5, "BLPOP", key, 5)
    finally:
        timer.join()
    assert time.monotonic() - began < 2
    assert got is not None and list(got) == [key, "a"]
    client.rpush(key, "b")
    assert type(got) is type(client.blpop([key], 1))  # the client's own parsing
    client.rpush(key, "c")
    assert blocking.call(client, 1, "BLMOVE", key, key, "RIGHT", "LEFT", 1) == "c"


def test_xread_is_parsed_as_by_the_client(client: redis.Redis, redis_base: str) -> None:
    key = f"{redis_base}:stream"
    client.xadd(key, {"s": "x", "k": "out", "d": "hello"})
    ours = blocking.call(client, 0.05, "XREAD", "COUNT", 10, "BLOCK", 50, "STREAMS", key, "0")
    assert ours == client.xread({key: "0"}, count=10, block=50)
    began = time.monotonic()
    last = ours[0][1][-1][0]
    assert not blocking.call(client, 0.2, "XREAD", "COUNT", 10, "BLOCK", 200, "STREAMS", key, last)
    assert time.monotonic() - began < 0.65


def test_an_error_reply_leaves_no_answer_pending(client: redis.Redis, redis_base: str) -> None:
    key = f"{redis_base}:string"
    client.set(key, "not a list")
    with pytest.raises(redis.ResponseError):
        blocking.call(client, 0.1, "BLPOP", key, 0.1)
    assert client.get(key) == "not a list"
