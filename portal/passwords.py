"""Password rules of MLPS level 3 beside Django's: complexity, and no reuse of the last passwords.

Both are password validators (AUTH_PASSWORD_VALIDATORS), so every place that checks a password
(the staff form, allauth's change, set and reset forms) applies them. The history validator also
records each new password's hash: Django calls `password_changed` when a user with a new password
is saved, whoever set it.
"""

import secrets
import unicodedata

from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from portal.models import PasswordHistory

CLASSES = (
    ("upper", str.isupper),
    ("lower", str.islower),
    ("digit", str.isdigit),
    ("symbol", lambda c: not c.isalnum() and not c.isspace()),
)


# Control, format (bidirectional overrides, zero-width), surrogate and private-use characters:
# nothing a person types on purpose, and each can hide what a stored value really says.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})


def has_invisible_characters(text: str) -> bool:
    return any(unicodedata.category(c) in INVISIBLE_CATEGORIES for c in text)


class PasswordCharactersValidator:
    """At most `max_length` characters (a clear error, not an hour of hashing), none invisible."""

    def __init__(self, max_length: int = 128) -> None:
        self.max_length = max_length

    def validate(self, password: str, user=None) -> None:
        if len(password) > self.max_length:
            raise ValidationError(
                _("The password must be at most %(count)d characters long.") % {"count": self.max_length},
                code="password_too_long",
            )
        if has_invisible_characters(password):
            raise ValidationError(_("The password contains control or invisible characters."), code="password_control")

    def get_help_text(self) -> str:
        return _("At most %(count)d characters, none of them control or invisible characters.") % {
            "count": self.max_length
        }


class CharacterClassesValidator:
    """At least `min_classes` of: upper-case letters, lower-case letters, digits, symbols."""

    def __init__(self, min_classes: int = 3) -> None:
        self.min_classes = min_classes

    def validate(self, password: str, user=None) -> None:
        found = sum(1 for _name, test in CLASSES if any(test(c) for c in password))
        if found < self.min_classes:
            raise ValidationError(self.get_help_text(), code="password_too_simple")

    def get_help_text(self) -> str:
        return _(
            "The password must contain at least %(count)d of: upper-case letters, lower-case letters, "
            "digits and symbols."
        ) % {"count": self.min_classes}


class PasswordHistoryValidator:
    """None of the account's last `count` passwords (the current one included) may be chosen again."""

    def __init__(self, count: int = 5) -> None:
        self.count = count

    def validate(self, password: str, user=None) -> None:
        if user is None or user.pk is None:
            return
        hashes = list(PasswordHistory.objects.filter(user_id=user.pk).values_list("password", flat=True)[: self.count])
        if user.password and user.password not in hashes:
            hashes.append(user.password)  # set before the history was kept
        if any(check_password(password, encoded) for encoded in hashes):
            raise ValidationError(self.get_help_text(), code="password_reused")

    def password_changed(self, password: str, user=None) -> None:
        if user is None or user.pk is None or not user.password:
            return
        PasswordHistory.objects.create(user_id=user.pk, password=user.password, created_at=timezone.now())
        keep = PasswordHistory.objects.filter(user_id=user.pk).values_list("pk", flat=True)[: self.count]
        PasswordHistory.objects.filter(user_id=user.pk).exclude(pk__in=list(keep)).delete()

    def get_help_text(self) -> str:
        return _("The password must differ from the last %(count)d passwords of the account.") % {"count": self.count}


TEMPORARY_ALPHABETS = (
    "ABCDEFGHJKLMNPQRSTUVWXYZ",  # no I, O: read aloud or copied from a screen without confusion
    "abcdefghijkmnpqrstuvwxyz",  # no l, o
    "23456789",
)


def temporary_password() -> str:
    """A one-time password for an administrator to hand over: 4 groups of 4, every kind present."""
    pool = "".join(TEMPORARY_ALPHABETS)
    while True:
        chars = [secrets.choice(pool) for _ in range(16)]
        if all(any(c in alphabet for c in chars) for alphabet in TEMPORARY_ALPHABETS):
            return "-".join("".join(chars[i : i + 4]) for i in range(0, 16, 4))
