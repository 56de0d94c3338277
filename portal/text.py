"""Text staff type into the screens: the one check of the characters a name, a reason or a label
may hold.

Refused wherever a line of text is typed: control characters (NUL, ESC and the rest of C0 and C1,
line breaks), invisible format characters (bidirectional overrides and isolates that make a name
read backwards on a screen or in a spreadsheet, zero-width spaces and joiners, the byte order
mark), lone surrogates, line and paragraph separators, and U+FFFD, which is what a value sent in
another encoding (GBK, a broken UTF-8) turns into when it is decoded. Private-use characters stay
allowed: some systems still type rare characters of Chinese names with them.
"""

import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
REPLACEMENT_CHARACTER = "\ufffd"


def unsafe_characters(value: str) -> list[str]:
    """The refused characters of `value`, each once, as U+XXXX, in order of appearance."""
    found: list[str] = []
    for char in value:
        if char == REPLACEMENT_CHARACTER or unicodedata.category(char) in _REFUSED_CATEGORIES:
            code = f"U+{ord(char):04X}"
            if code not in found:
                found.append(code)
    return found


def text_refusal(value: str) -> str | None:
    """Why `value` is refused (translated, for a form error or a service's DomainError), or None."""
    found = unsafe_characters(value)
    if not found:
        return None
    return _("Remove the control or invisible characters (%(characters)s).") % {"characters": ", ".join(found[:5])}


def validate_plain_text(value: object) -> None:
    """Django validator: a single line of visible text."""
    if isinstance(value, str) and (message := text_refusal(value)):
        raise ValidationError(message, code="unsafe_characters")


class PlainTextForm(forms.Form):
    """A form whose one-line text fields (not passwords, not text areas such as a PEM key) take
    plain text only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.CharField) and not isinstance(
                field.widget, (forms.PasswordInput, forms.Textarea)
            ):
                field.validators.append(validate_plain_text)
