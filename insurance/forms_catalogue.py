"""Input validation of the catalogue, facility, policy and import screens.

Money is entered as yuan with at most two decimals and converted to integer
fen exactly (Decimal, never float); ratios and shares are entered as
percentages with at most two decimals and stored as fractions."""

import datetime as dt
import re
from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _

from insurance.catalogue import format_percent, format_yuan, shanghai_today
from insurance.models import FacilityKind, Scheme, ServiceCategory
from portal.scope import regions_visible_to
from portal.text import PlainTextForm

_YUAN_RE = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_PERCENT_RE = re.compile(r"^\d{1,3}(\.\d{1,2})?$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024


def yuan_to_fen(text: str) -> int:
    """ "12.3" -> 1230 fen, exactly; raises ValueError on anything else (negative, 3 decimals, exponent)."""
    text = text.strip().replace(",", "")
    if not _YUAN_RE.match(text):
        raise ValueError(text)
    return int(Decimal(text) * 100)


class YuanField(forms.CharField):
    """Yuan in, integer fen out."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("help_text", _("In yuan, at most two decimals."))
        super().__init__(*args, **kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "maxlength": "20"})

    def prepare_value(self, value):
        return format_yuan(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        try:
            return yuan_to_fen(value)
        except ValueError:
            raise forms.ValidationError(
                _("Enter an amount in yuan that is not negative, with at most two decimals (for example 12.50)."),
                code="invalid_yuan",
            ) from None


class PercentField(forms.CharField):
    """A percentage from 0 to 100 with at most two decimals in, a Decimal fraction out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "maxlength": "8"})

    def prepare_value(self, value):
        return format_percent(value) if isinstance(value, Decimal) else value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        text = value.strip().rstrip("%").strip()
        if not _PERCENT_RE.match(text) or Decimal(text) > 100:
            raise forms.ValidationError(
                _("Enter a percentage from 0 to 100 with at most two decimals."), code="invalid_percent"
            )
        return Decimal(text) / 100


# The sort choices every list of coded entries offers first.
_CODE_AND_NAME_SORTS = [
    ("code", _("Code")),
    ("-code", _("Code, descending")),
    ("name", _("Name")),
    ("-name", _("Name, descending")),
]


class _CodeMixin:
    def clean_code(self) -> str:
        code = self.cleaned_data["code"].strip()
        if not _CODE_RE.match(code):
            raise forms.ValidationError(_("A code is 1 to 32 letters, digits, '.', '_' or '-'."))
        return code


class ServiceFilterForm(forms.Form):
    SORTS = {
        "code": "code",
        "-code": "-code",
        "name": "name_zh",
        "-name": "-name_zh",
        "category": "category",
        "-category": "-category",
        "price": "max_unit_price_fen",
        "-price": "-max_unit_price_fen",
    }
    q = forms.CharField(label=_("Code or name"), required=False, max_length=64)
    category = forms.ChoiceField(
        label=_("Category"), required=False, choices=[("", _("All categories")), *ServiceCategory.choices]
    )
    active = forms.ChoiceField(
        label=_("State"),
        required=False,
        choices=[("", _("Active and inactive")), ("yes", _("Active")), ("no", _("Inactive"))],
    )
    sort = forms.ChoiceField(
        label=_("Sort by"),
        required=False,
        choices=[
            *_CODE_AND_NAME_SORTS,
            ("category", _("Category")),
            ("-category", _("Category, descending")),
            ("price", _("Maximum unit price")),
            ("-price", _("Maximum unit price, descending")),
        ],
    )


class ServiceForm(_CodeMixin, PlainTextForm):
    code = forms.CharField(label=_("Code"), max_length=32)
    name_zh = forms.CharField(label=_("Chinese name"), max_length=128)
    name_en = forms.CharField(label=_("English name"), max_length=128)
    category = forms.ChoiceField(label=_("Category"), choices=ServiceCategory.choices)
    unit = forms.CharField(label=_("Unit"), max_length=16)
    max_unit_price_fen = YuanField(label=_("Maximum unit price (yuan)"))

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            # The code is the entry's identity: shown, never changed.
            del self.fields["code"]


class FacilityFilterForm(forms.Form):
    q = forms.CharField(label=_("Code or name"), required=False, max_length=64)
    region = forms.ChoiceField(label=_("Region"), required=False)
    kind = forms.ChoiceField(label=_("Kind"), required=False, choices=[("", _("All kinds")), *FacilityKind.choices])
    active = ServiceFilterForm.base_fields["active"]
    sort = forms.ChoiceField(
        label=_("Sort by"),
        required=False,
        choices=[
            *_CODE_AND_NAME_SORTS,
            ("region", _("Region")),
            ("kind", _("Kind")),
        ],
    )
    SORTS = {
        "code": "code",
        "-code": "-code",
        "name": "name_zh",
        "-name": "-name_zh",
        "region": "region_id",
        "kind": "kind",
    }

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].choices = [("", _("All regions"))] + [
            (r.code, f"{r.code} {r.display_name}") for r in regions_visible_to(user)
        ]


class FacilityForm(_CodeMixin, PlainTextForm):
    code = forms.CharField(label=_("Code"), max_length=32)
    name_zh = forms.CharField(label=_("Chinese name"), max_length=128)
    name_en = forms.CharField(label=_("English name"), max_length=128)
    kind = forms.ChoiceField(label=_("Kind"), choices=FacilityKind.choices)
    region = forms.ModelChoiceField(label=_("Region"), queryset=None, empty_label=None)

    def __init__(self, *args, regions=None, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["code"]
            del self.fields["region"]
        else:
            self.fields["region"].queryset = regions


class PolicyChooseForm(forms.Form):
    region = forms.ChoiceField(label=_("Region"))
    scheme = forms.ChoiceField(label=_("Scheme"), choices=Scheme.choices)
    year = forms.IntegerField(label=_("Year"), min_value=2000, max_value=2099)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].choices = [(r.code, f"{r.code} {r.display_name}") for r in regions_visible_to(user)]


class PolicyVersionForm(PlainTextForm):
    effective_from = forms.DateField(label=_("Effective from"), widget=forms.DateInput(attrs={"type": "date"}))
    deductible_fen = YuanField(label=_("Deductible (yuan)"))
    ratio = PercentField(label=_("Reimbursement ratio (%)"))
    annual_cap_fen = YuanField(label=_("Annual fund cap (yuan)"))
    personal_account_allowed = forms.BooleanField(label=_("The personal account may pay"), required=False)
    premium_fen = YuanField(label=_("Resident premium per year (yuan)"))

    def __init__(self, *args, scheme: str, today: dt.date | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today or shanghai_today()
        if scheme != Scheme.RESIDENT:
            del self.fields["premium_fen"]
        for value, label in ServiceCategory.choices:
            self.fields[f"share_{value}"] = PercentField(
                label=_("Eligible share: %(category)s (%%)") % {"category": label}
            )

    def share_fields(self) -> list:
        return [self[f"share_{value}"] for value in ServiceCategory.values]

    def clean_effective_from(self) -> dt.date:
        value = self.cleaned_data["effective_from"]
        if value < self.today:
            raise forms.ValidationError(_("A new version cannot take effect in the past."), code="in_past")
        return value

    def policy_values(self) -> dict:
        """The cleaned data in the shape of `policy_create_version`'s keywords."""
        data = self.cleaned_data
        values = {
            "effective_from": data["effective_from"],
            "deductible_fen": data["deductible_fen"],
            "ratio": data["ratio"],
            "annual_cap_fen": data["annual_cap_fen"],
            "personal_account_allowed": data["personal_account_allowed"],
            "eligible_shares": {value: data[f"share_{value}"] for value in ServiceCategory.values},
            "premium_fen": data.get("premium_fen"),
        }
        return values


class ImportForm(forms.Form):
    file = forms.FileField(label=_("CSV file (UTF-8)"))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 5 MB."))
        return upload
