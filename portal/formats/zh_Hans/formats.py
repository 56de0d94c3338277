"""Simplified Chinese formats (FORMAT_MODULE_PATH); names not set here fall back to Django's zh_Hans.

Lists and logs use the numeric forms staff read in every Chinese back office
("2026-11-28 15:18"); the long date keeps Django's "2026年11月28日". Django's own
zh_Hans leaves the thousands separator empty with groups of four, which turns
`intcomma` into a no-op: amounts and counts group by three with commas as
Chinese financial statements do.
"""

DATE_FORMAT = "Y年n月j日"
SHORT_DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "Y年n月"
MONTH_DAY_FORMAT = "n月j日"

DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
