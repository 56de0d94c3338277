"""The columns of a citizen import file: their English header names (the stored
codes), the Chinese names a register's staff write, what each holds, and an example
row, shown on the upload screen and written into the downloadable templates."""

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from insurance.models import Scheme


@dataclass(frozen=True)
class ImportColumn:
    name: str  # the English header name, and the key of a row's values
    chinese: str  # the Chinese header name, accepted as well as `name`
    label: Promise  # what the screen calls the column, in the reader's language
    required: bool
    format: Promise
    example: str


# The example identity number is GB 11643-1999's own published example: valid, and no one's.
EXAMPLE_ID_NUMBER = "11010519491231002X"

COLUMNS = (
    ImportColumn(
        "id_number",
        "身份证号",
        pgettext_lazy("import column", "Identity number"),
        True,
        _("18 characters: 17 digits and a check digit or X"),
        EXAMPLE_ID_NUMBER,
    ),
    ImportColumn("name", "姓名", pgettext_lazy("import column", "Name"), True, _("1 to 64 characters"), "张三"),
    ImportColumn(
        "phone",
        "手机号",
        pgettext_lazy("import column", "Phone"),
        True,
        _("An 11-digit mobile number, or a landline with its area code (010-12345678); may be left empty"),
        "13800000000",
    ),
    ImportColumn(
        "region_code",
        "地区代码",
        pgettext_lazy("import column", "Region code"),
        True,
        _("The six-digit code of the import's pilot region"),
        "310000",
    ),
    ImportColumn(
        "scheme",
        "险种",
        pgettext_lazy("import column", "Scheme"),
        True,
        _("职工医保 or 职工基本医疗保险 (employee); 居民医保 or 城乡居民基本医疗保险 (resident)"),
        "职工医保",
    ),
    ImportColumn(
        "account_balance_fen",
        "个人账户余额（分）",
        pgettext_lazy("import column", "Personal account balance (fen)"),
        False,
        _("A whole number of fen (1 yuan = 100 fen); may be left empty"),
        "120000",
    ),
)

REQUIRED_COLUMNS = tuple(c.name for c in COLUMNS if c.required)
OPTIONAL_COLUMNS = tuple(c.name for c in COLUMNS if not c.required)

# Header names as written, lower-cased: the Chinese names, with ASCII brackets too.
HEADER_ALIASES = {c.chinese: c.name for c in COLUMNS} | {
    c.chinese.replace("（", "(").replace("）", ")"): c.name for c in COLUMNS
}

# The names the NHSA's materials give the two schemes, short and full.
SCHEME_ALIASES = {
    "职工医保": Scheme.EMPLOYEE.value,
    "职工基本医疗保险": Scheme.EMPLOYEE.value,
    "居民医保": Scheme.RESIDENT.value,
    "城乡居民基本医疗保险": Scheme.RESIDENT.value,
}
