"""Where a production portal may send webhooks: public addresses only (PARTNER_API.md "Provisioning").

A webhook URL is checked when it is set (an address written in the URL, in any form a resolver
accepts, such as `2130706433` or `[::ffff:127.0.0.1]`) and again when each delivery connects (the
address the name resolved to), so that neither a URL nor a DNS answer can point a delivery at
loopback, private, link-local (cloud metadata), shared, reserved or IPv4-mapped addresses.
"""

import ipaddress
import socket

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused(address: IPAddress) -> bool:
    """True for anything but a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped or address.sixtofour or address.teredo):
        return True
    return not address.is_global or address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, in any form the resolver would accept, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host.lower()):
        try:  # the legacy IPv4 forms: 2130706433, 0x7f.1, 127.1
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class _PublicOnly:
    """A connection that refuses to talk to a non-public peer, whatever the name resolved to."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = ipaddress.ip_address(sock.getpeername()[0])
        if refused(peer):
            sock.close()
            raise NewConnectionError(self, f"refused: {peer} is not a public address")  # type: ignore[arg-type]
        return sock


class PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass


class PublicHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PublicHTTPConnection


class PublicHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PublicHTTPSConnection


def public_only(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """`manager`, connecting to public addresses only."""
    manager.pool_classes_by_scheme = {"http": PublicHTTPConnectionPool, "https": PublicHTTPSConnectionPool}
    return manager
