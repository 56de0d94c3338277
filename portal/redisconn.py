"""Where Redis is: one server, or the master that Redis Sentinel names.

`REDIS_URL` takes either form, and every Redis client of the portal is built from it here: Django's
cache (and with it the partner API's nonces and rate limits, portal/fastcache.py), Celery's broker
and the readiness check.

    redis://[:password@]host:port/db                 one server
    redis+sentinel://[:password@]host:port[,host:port...]/master/db
                                                     the master Sentinel names `master`, asked of
                                                     these Sentinels; the password is the master's
                                                     and the Sentinels' (deploy/redis/)

With Sentinel, a client asks a Sentinel for the master's address when it connects, and a
connection that finds its server demoted to a replica is dropped: after a failover the next
command reaches the new master, with no address to move by hand.
"""

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import Sentinel, SentinelConnectionPool

SENTINEL_SCHEME = "redis+sentinel"
# A Sentinel that does not answer within this long is skipped for the next one.
SENTINEL_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: str | None
    db: int

    def sentinel(self, **connection_kwargs) -> Sentinel:
        """A Sentinel client; `connection_kwargs` go to the connections it makes to the master."""
        sentinel_kwargs = {
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        }
        if self.password:
            sentinel_kwargs["password"] = self.password
        return Sentinel(
            list(self.sentinels),
            sentinel_kwargs=sentinel_kwargs,
            password=self.password,
            db=self.db,
            **connection_kwargs,
        )


def sentinel_address(url: str) -> SentinelAddress | None:
    """The Sentinel form of `url` parsed, or None for a plain redis:// (or rediss://) URL."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        return None
    if parts.scheme != SENTINEL_SCHEME:
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or {SENTINEL_SCHEME}://")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_URL: each Sentinel is host:port, not {item!r}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [part for part in parts.path.split("/") if part]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ImproperlyConfigured(f"REDIS_URL: {SENTINEL_SCHEME}://host:port[,host:port...]/master[/db]")
    password = unquote(parts.password) if parts.password else None
    return SentinelAddress(tuple(sentinels), path[0], password, int(path[1]) if len(path) == 2 else 0)


def client(url: str, **kwargs) -> redis.Redis:
    """A client of the server (or the Sentinel-named master) of `url`."""
    address = sentinel_address(url)
    if address is None:
        return redis.Redis.from_url(url, **kwargs)
    return address.sentinel(**kwargs).master_for(address.master)


class CacheConnectionPool(redis.ConnectionPool):
    """Django's Redis cache's `pool_class`: it builds its pool with `from_url(LOCATION, **OPTIONS)`."""

    @classmethod
    def from_url(cls, url: str, **kwargs):  # type: ignore[override]  # returns either kind of pool
        address = sentinel_address(url)
        if address is None:
            return redis.ConnectionPool.from_url(url, **kwargs)
        return SentinelConnectionPool(
            address.master, address.sentinel(), password=address.password, db=address.db, **kwargs
        )


def _fields(flat: list) -> dict[str, str]:
    """A Sentinel reply's name, value, name, value... as a dict of text."""
    text = [item.decode() if isinstance(item, bytes) else str(item) for item in flat]
    return dict(zip(text[::2], text[1::2], strict=True))


def sentinel_view(url: str) -> tuple[int, int] | None:
    """For a Sentinel URL, (replicas in sync with the master, Sentinels watching it) as the first
    Sentinel that answers sees them; None for a single server. Raises if no Sentinel answers."""
    address = sentinel_address(url)
    if address is None:
        return None
    error: Exception | None = None
    for client in address.sentinel().sentinels:
        try:
            replicas = [_fields(r) for r in client.execute_command("SENTINEL", "REPLICAS", address.master)]
            others = [_fields(r) for r in client.execute_command("SENTINEL", "SENTINELS", address.master)]
        except redis.RedisError as exc:
            error = exc
            continue
        finally:
            client.close()  # asked once a scrape: no connection kept
        # A Sentinel keeps the replicas and Sentinels it has seen, flagging those that stopped answering.
        unwell = {"s_down", "o_down", "disconnected"}
        in_sync = [
            r for r in replicas if r.get("master-link-status") == "ok" and not unwell & set(r["flags"].split(","))
        ]
        watching = [r for r in others if not unwell & set(r["flags"].split(","))]
        return len(in_sync), len(watching) + 1
    raise redis.ConnectionError(f"no Sentinel answers ({type(error).__name__})")


def celery_broker(url: str) -> tuple[str, str, dict]:
    """Celery's broker URL, transport and transport options for `url` (portal/broker.py)."""
    address = sentinel_address(url)
    if address is None:
        return url, "portal.broker:Transport", {}
    # kombu's Sentinel transport: one sentinel:// URL per Sentinel, joined by ";"; each carries the
    # master's password and db, the Sentinels' password goes in sentinel_kwargs.
    auth = f":{quote(address.password, safe='')}@" if address.password else ""
    broker_url = ";".join(f"sentinel://{auth}{host}:{port}/{address.db}" for host, port in address.sentinels)
    options: dict = {"master_name": address.master}
    if address.password:
        options["sentinel_kwargs"] = {"password": address.password}
    return broker_url, "portal.broker:SentinelTransport", options
