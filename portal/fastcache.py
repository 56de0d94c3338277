"""Counters and once-only markers on the hot path of every partner request.

Django's Redis cache builds a new client object for every operation; here one
client per process (over the cache's own connection pool) does a nonce check
or a counter in a single round trip. Without Redis (the demo), the Django
cache stands in.
"""

import os

from django.core.cache import cache


def _redis_client():
    backend = getattr(cache, "_cache", None)
    if backend is None or not hasattr(backend, "get_client"):
        return None
    client = getattr(backend, "_ecard_client", None)
    if client is None:
        client = backend._client(connection_pool=backend._get_connection_pool(write=True))
        backend._ecard_client = client
    return client


def add_once(key: str, *, timeout: int) -> bool:
    """True the first time `key` is added within `timeout` seconds, False afterwards."""
    client = _redis_client()
    if client is None:
        return cache.add(key, 1, timeout=timeout)
    return bool(client.set(cache.make_and_validate_key(key), 1, nx=True, ex=timeout))


def count(key: str, *, timeout: int) -> int:
    """Increment a counter that expires `timeout` seconds after its first increment."""
    client = _redis_client()
    if client is None:
        cache.add(key, 0, timeout=timeout)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=timeout)
            return 1
    full_key = cache.make_and_validate_key(key)
    pipe = client.pipeline(transaction=False)
    pipe.incr(full_key)
    pipe.expire(full_key, timeout)
    return int(pipe.execute()[0])


def shared() -> bool:
    """True where the markers are shared by every process (Redis); False for the demo's per-process cache."""
    return _redis_client() is not None


def forget(key: str) -> None:
    client = _redis_client()
    if client is None:
        cache.delete(key)
    else:
        client.delete(cache.make_and_validate_key(key))


def window_record(key: str, *, seconds: int, now: float) -> None:
    """Note one event at `now` in a sliding window of `seconds` (see `window_times`)."""
    client = _redis_client()
    if client is None:
        times = [t for t in (cache.get(key) or []) if t > now - seconds]
        cache.set(key, [*times, now], timeout=seconds)
        return
    full_key = cache.make_and_validate_key(key)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(full_key, {f"{now!r}:{os.urandom(6).hex()}": now})
    pipe.zremrangebyscore(full_key, "-inf", now - seconds)
    pipe.expire(full_key, seconds + 1)
    pipe.execute()


def window_times(key: str, *, seconds: int, now: float) -> list[float]:
    """The times, oldest first, of the events noted in the last `seconds` before `now`.

    A sliding window, not a fixed one: ten events spread over two clock minutes are
    still ten events within sixty seconds.
    """
    client = _redis_client()
    if client is None:
        return sorted(t for t in (cache.get(key) or []) if t > now - seconds)
    full_key = cache.make_and_validate_key(key)
    pairs = client.zrangebyscore(full_key, f"({now - seconds!r}", "+inf", withscores=True)
    return [score for _member, score in pairs]
