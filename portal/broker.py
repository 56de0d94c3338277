"""Celery's broker transports: kombu's Redis (and Redis Sentinel) transport that drops a message it cannot decode.

kombu decodes each message's envelope (JSON) inside the worker's event loop, so one malformed
entry in a queue raised out of the loop and stopped the worker ("Unrecoverable error:
JSONDecodeError"). Here such a message, already popped from its list, is logged and dropped, and
the worker goes on. A task body that does not decode is Celery's own case: it logs and acks it.
"""

import logging

from kombu.transport import TRANSPORT_ALIASES, redis
from kombu.transport.virtual import Empty

logger = logging.getLogger(__name__)

# What decoding a malformed envelope, or building a message from one, raises.
_UNDECODABLE = (ValueError, TypeError, KeyError, AttributeError)


def _dropped(queue: str, exc: Exception) -> Empty:
    # The message itself is not logged: it may hold personal data.
    logger.error("dropped a message that cannot be decoded (queue %s): %s", queue, type(exc).__name__)
    return Empty()


class _DropsUndecodable:
    """What both channels share: a message that cannot be decoded is dropped, not raised."""

    def _brpop_read(self, **options):
        try:
            return super()._brpop_read(**options)  # type: ignore[misc]
        except _UNDECODABLE as exc:
            raise _dropped("being read", exc) from None

    def _get(self, queue):
        try:
            return super()._get(queue)  # type: ignore[misc]
        except _UNDECODABLE as exc:
            raise _dropped(queue, exc) from None


class Channel(_DropsUndecodable, redis.Channel):
    pass


class Transport(redis.Transport):
    Channel = Channel


class SentinelChannel(_DropsUndecodable, redis.SentinelChannel):
    """The same over kombu's Sentinel channel: it asks a Sentinel for the master as it connects."""


class SentinelTransport(redis.SentinelTransport):
    """For `REDIS_URL=redis+sentinel://...` (portal/redisconn.py builds the broker's settings)."""

    Channel = SentinelChannel


# With Sentinel the broker URL lists every Sentinel (`sentinel://a;sentinel://b`), and on a
# connection error kombu switches to the next one, naming the transport by that URL's scheme: the
# scheme must name this transport, or a worker would go on with kombu's own after a failover.
TRANSPORT_ALIASES["sentinel"] = "portal.broker:SentinelTransport"
