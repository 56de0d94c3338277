"""The error report of a citizen import, one layout for the screen's download and for
`manage.py import_citizens --errors`: row, column (with its Chinese name in Chinese),
message and the rejected value as `shown_value` masks it, in the active language."""

from django.utils.translation import get_language
from django.utils.translation import gettext as _

from insurance.imports.columns import COLUMNS
from portal.exports import neutralise


def chinese() -> bool:
    return (get_language() or "zh").startswith("zh")


def column_label(column: str) -> str:
    """A column as the report names it: `身份证号 id_number` in Chinese, `id_number` in English."""
    name = {c.name: c.chinese for c in COLUMNS}.get(column)
    return f"{name} {column}" if name and chinese() else column


def header() -> list[str]:
    return [_("Row number"), _("Column"), _("Error"), _("Submitted value")]


def line(row: int, column: str, message: str, value: str) -> list[object]:
    """One error as a report line; text a spreadsheet would run as a formula is neutralised."""
    return [row, column_label(column), neutralise(message), neutralise(value)]
