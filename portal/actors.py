"""Who did something: a person, a partner system or the portal itself."""

from dataclasses import dataclass

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
    return request.META.get("REMOTE_ADDR") or None
