"""Counters and once-only markers on the hot path of every partner request.

Django's Redis cache builds a new client object for every operation; here one
client per process (over the cache's own connection pool) does a nonce check
or a counter in a single round trip. The default cache must be Redis: the
markers are shared by every process.
"""

import os

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured


def redis_client():
    """This process's Redis client over the default cache's connection pool."""
    backend = getattr(cache, "_cache", None)
    client = getattr(backend, "_ecard_client", None)
    if client is None:
        if not hasattr(backend, "get_client"):
            raise ImproperlyConfigured("the default cache must be Django's Redis cache (REDIS_URL)")
        client = backend._client(connection_pool=backend._get_connection_pool(write=True))
        backend._ecard_client = client
    return client


def add_once(key: str, *, timeout: int) -> bool:
    """True the first time `key` is added within `timeout` seconds, False afterwards."""
    return bool(redis_client().set(cache.make_and_validate_key(key), 1, nx=True, ex=timeout))


def count(key: str, *, timeout: int) -> int:
    """Increment a counter that expires `timeout` seconds after its first increment."""
    full_key = cache.make_and_validate_key(key)
    pipe = redis_client().pipeline(transaction=False)
    pipe.incr(full_key)
    pipe.expire(full_key, timeout)
    return int(pipe.execute()[0])


def forget(key: str) -> None:
    redis_client().delete(cache.make_and_validate_key(key))


def window_record(key: str, *, seconds: int, now: float) -> None:
    """Note one event at `now` in a sliding window of `seconds` (see `window_times`)."""
    full_key = cache.make_and_validate_key(key)
    pipe = redis_client().pipeline(transaction=False)
    pipe.zadd(full_key, {f"{now!r}:{os.urandom(6).hex()}": now})
    pipe.zremrangebyscore(full_key, "-inf", now - seconds)
    pipe.expire(full_key, seconds + 1)
    pipe.execute()


def window_times(key: str, *, seconds: int, now: float) -> list[float]:
    """The times, oldest first, of the events noted in the last `seconds` before `now`.

    A sliding window, not a fixed one: ten events spread over two clock minutes are
    still ten events within sixty seconds.
    """
    full_key = cache.make_and_validate_key(key)
    pairs = redis_client().zrangebyscore(full_key, f"({now - seconds!r}", "+inf", withscores=True)
    return [score for _member, score in pairs]
