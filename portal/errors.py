"""One domain error type with a stable code.

The API renders it as problem+json, the screens as a message.
"""

from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    """A refused operation. `code` is stable and machine-read; `message` is for people."""

    status = 409

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None, **extra: object):
        self.code = str(code)  # an app's StrEnum member becomes its plain, stable value
        self.message = str(message) if message is not None else self.code
        if status is not None:
            self.status = status
        self.extra = extra
        super().__init__(f"{self.code}: {self.message}")


class InvalidTransition(DomainError):
    def __init__(self, entity: str, from_state: str, action: str):
        super().__init__(
            "invalid_state",
            _("This %(entity)s is %(state)s: it cannot be %(action)s.")
            % {"entity": entity, "state": from_state, "action": action},
        )
        self.from_state = from_state
        self.action = action
