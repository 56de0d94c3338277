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


# Trim the window, then note the event only if fewer than `limit` are in it: one script, so that
# concurrent callers cannot all see room for one more. Returns the time of the event that has to
# leave the window before there is room again, or nothing if the event was noted.
_RECORD_BELOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[3])
if n >= limit then
  local blocking = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return blocking[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return false
"""


def window_record_below(key: str, *, seconds: int, limit: int, now: float) -> float | None:
    """Note one event at `now` in a sliding window of `seconds`, unless `limit` events are in it
    already: then nothing is noted and the time of the event whose ageing out makes room is
    returned. Atomic in Redis: concurrent callers never note more than `limit`."""
    full_key = cache.make_and_validate_key(key)
    member = f"{now!r}:{os.urandom(6).hex()}"
    blocking = redis_client().eval(_RECORD_BELOW, 1, full_key, repr(now), seconds, limit, member)
    return None if blocking is None else float(blocking)


def window_times(key: str, *, seconds: int, now: float) -> list[float]:
    """The times, oldest first, of the events noted in the last `seconds` before `now`.

    A sliding window, not a fixed one: ten events spread over two clock minutes are
    still ten events within sixty seconds.
    """
    full_key = cache.make_and_validate_key(key)
    pairs = redis_client().zrangebyscore(full_key, f"({now - seconds!r}", "+inf", withscores=True)
    return [score for _member, score in pairs]
