"""English formats (FORMAT_MODULE_PATH); names not set here fall back to Django's en.

Day, abbreviated month and year ("28 Nov 2026") cannot be misread the way
"11/12/2026" can, and times stay on the 24-hour clock the pilot works in.
"""

DATE_FORMAT = "j F Y"
SHORT_DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y H:i:s"
SHORT_DATETIME_FORMAT = "j M Y H:i"
TIME_FORMAT = "H:i"
YEAR_MONTH_FORMAT = "F Y"
MONTH_DAY_FORMAT = "j F"

DECIMAL_SEPARATOR = "."
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
