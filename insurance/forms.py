"""Input validation of the citizen and e-card screens (the 400s); services decide the rest."""

import re

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from insurance.identity import InvalidIdentityNumber, parse_identity_number
from insurance.models import CitizenStatus, Scheme
from portal.scope import regions_visible_to
from portal.text import PlainTextForm

PHONE_RE = re.compile(r"^\+?\d{5,20}$")
REASON_MAX = 128


def _phone(value: str) -> str:
    value = re.sub(r"[\s-]", "", value or "")
    if value and not PHONE_RE.match(value):
        raise forms.ValidationError(_("A phone number is 5 to 20 digits, optionally starting with +."))
    return value


class CitizenContactMixin:
    """The cleaning of a citizen's `name` and `phone` fields, shared by the register
    and edit forms (the services check them again)."""

    cleaned_data: dict

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError(_("A name is 1 to 64 characters."))
        return name

    def clean_phone(self) -> str:
        return _phone(self.cleaned_data["phone"])


class CitizenSearchForm(forms.Form):
    q = forms.CharField(label=_("Identity number, phone or name"), required=False, max_length=64)
    region = forms.ChoiceField(label=_("Region"), required=False)
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All statuses")), *CitizenStatus.choices]
    )
    scheme = forms.ChoiceField(label=_("Scheme"), required=False, choices=[("", _("All schemes")), *Scheme.choices])

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].choices = [("", _("All regions"))] + [
            (r.code, f"{r.code} {r.display_name}") for r in regions_visible_to(user)
        ]


class CitizenRegisterForm(CitizenContactMixin, PlainTextForm):
    id_number = forms.CharField(
        label=_("Identity number"),
        max_length=18,
        min_length=18,
        error_messages={"min_length": _("An identity number has 18 characters.")},
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    name = forms.CharField(label=pgettext_lazy("person", "Name"), max_length=64)
    phone = forms.CharField(label=_("Phone"), required=False, max_length=24)
    region = forms.ModelChoiceField(label=_("Insured region"), queryset=None, empty_label=None)
    scheme = forms.ChoiceField(label=_("Scheme"), choices=Scheme.choices)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = regions_visible_to(user)

    def clean_id_number(self) -> str:
        try:
            return parse_identity_number(self.cleaned_data["id_number"]).value
        except InvalidIdentityNumber as exc:
            raise forms.ValidationError(exc.message) from exc


class CitizenEditForm(CitizenContactMixin, PlainTextForm):
    name = forms.CharField(label=pgettext_lazy("person", "Name"), max_length=64)
    phone = forms.CharField(label=_("Phone"), required=False, max_length=24)
    scheme = forms.ChoiceField(label=_("Scheme"), choices=Scheme.choices)


class ReasonForm(PlainTextForm):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=REASON_MAX,
        error_messages={"required": _("A reason is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("A reason is required."))
        return reason


class CitizenStatusForm(ReasonForm):
    status = forms.ChoiceField(label=_("New status"), choices=CitizenStatus.choices)
    field_order = ["status", "reason"]

    def __init__(self, *args, citizen, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [c for c in CitizenStatus.choices if c[0] != citizen.status]
