"""The session cache itself, against a real Redis: what Redis signals is forgotten, an answer
that may be stale is never kept, a fork starts afresh, and closing ends its thread."""

from __future__ import annotations

import os
import time

import redis

from labruntime.store.connection import Connection
from tests._helpers import wait_for


def _cache(redis_url: str, redis_base: str):
    conn = Connection(redis_url, redis_base)
    cache = conn.session_cache(f"{redis_base}:weblab:session:")
    wait_for(lambda: cache.live, 5, "the cache to listen")
    return conn, cache


def test_a_change_by_any_client_is_forgotten(redis_url, redis_base):
    conn, cache = _cache(redis_url, redis_base)
    other = redis.Redis.from_url(redis_url)
    try:
        for change in (
            lambda key: other.hset(key, "status", "expired"),
            lambda key: other.delete(key),
            lambda key: other.pexpire(key, 1),  # and then expires
        ):
            key = f"{redis_base}:weblab:session:abc"
            other.hset(key, "status", "active")
            cache.put("abc", "remembered", cache.version())
            assert cache.get("abc", 60) == "remembered"
            change(key)
            wait_for(lambda: cache.get("abc", 60) is None, 2, "the invalidation")
        # a key of another lab or kind is not this cache's business
        cache.put("def", "remembered", cache.version())
        other.set(f"{redis_base}:weblab:live", "1")
        other.hset(f"x{redis_base}:weblab:session:def", "status", "1")
        time.sleep(0.1)
        assert cache.get("def", 60) == "remembered"
    finally:
        other.close()
        conn.close()


def test_an_answer_read_across_an_invalidation_is_not_kept(redis_url, redis_base):
    conn, cache = _cache(redis_url, redis_base)
    try:
        version = cache.version()  # taken before the read is sent
        cache.forget(["other-session"])  # any change meanwhile, of any session
        cache.put("abc", "maybe stale", version)
        assert cache.get("abc", 60) is None
        cache.put("abc", "fresh", cache.version())
        assert cache.get("abc", 60) == "fresh"
        time.sleep(0.06)
        assert cache.get("abc", 0.05) is None  # older than the caller's max age
    finally:
        conn.close()


def test_closing_ends_the_thread_and_a_later_use_starts_again(redis_url, redis_base):
    conn, cache = _cache(redis_url, redis_base)
    thread = cache._thread
    conn.close()
    assert thread is not None and not thread.is_alive()
    assert cache.version() is None and cache.get("abc", 60) is None  # never serves now
    conn2, cache2 = _cache(redis_url, redis_base)
    try:
        assert cache2 is cache  # one per process and lab
    finally:
        conn2.close()


def test_a_forked_child_starts_its_own_listener(redis_url, redis_base):
    conn, cache = _cache(redis_url, redis_base)
    try:
        cache.put("abc", "parent's", cache.version())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nothing of the parent's is served, its own thread listens
            try:
                ok = cache.get("abc", 60) is None
                deadline = time.monotonic() + 5
                while not cache.live and time.monotonic() < deadline:
                    time.sleep(0.02)
                ok = ok and cache.live and cache._thread is not None
                os.write(write, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(write)
        assert os.read(read, 1) == b"1"
        os.waitpid(pid, 0)
        os.close(read)
        assert cache.get("abc", 60) == "parent's"  # the parent's is untouched
    finally:
        conn.close()
