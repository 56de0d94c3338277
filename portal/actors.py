"""Who did something: a person, a partner system or the portal itself."""

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest


@dataclass(frozen=True)
class Actor:
    type: str  # "user", "partner" or "system"
    id: str
    label: str
    ip: str | None = None
    user_id: int | None = None

    @classmethod
    def for_user(cls, user, ip: str | None = None) -> "Actor":
        return cls(type="user", id=str(user.pk), label=user.get_username(), ip=ip, user_id=user.pk)

    @classmethod
    def for_request(cls, request: HttpRequest) -> "Actor":
        return cls.for_user(request.user, client_ip(request))

    @classmethod
    def for_partner(cls, code: str, ip: str | None = None) -> "Actor":
        return cls(type="partner", id=code, label=code, ip=ip)

    @classmethod
    def system(cls, label: str) -> "Actor":
        return cls(type="system", id="", label=label)


def client_ip(request: HttpRequest) -> str | None:
    """The address of whoever sent the request.

    Behind `ECARD_TRUSTED_PROXY_COUNT` reverse proxies of the deployment's own, each appends the
    address it received the request from to X-Forwarded-For, so the client is the entry that many
    places from the right. Entries further left were written by the client and prove nothing; with
    no trusted proxy the header is ignored altogether. A request that reached the portal without
    passing the proxies, or an entry that is not an address, leaves REMOTE_ADDR.
    """
    remote = _address(request.META.get("REMOTE_ADDR", ""))
    count = settings.ECARD_TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    entries = [entry for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if not entries:
        return remote
    return _address(entries[-min(count, len(entries))]) or remote


def _address(value: str) -> str | None:
    """An IP address in its canonical form, without a port some proxies add; None if it is none."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
