from django import forms
from django.utils.translation import gettext_lazy as _

from payments.linkages.selectors import linkable_partners


class LinkageCreateForm(forms.Form):
    partner = forms.ModelChoiceField(label=_("Partner"), queryset=None, empty_label=None)
    partner_user_ref = forms.CharField(label=_("Partner user reference"), max_length=128)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["partner"].queryset = linkable_partners()

    def clean_partner_user_ref(self) -> str:
        value = self.cleaned_data["partner_user_ref"].strip()
        if not value:
            raise forms.ValidationError(_("A partner user reference is 1 to 128 characters."))
        return value


class LinkageUnlinkForm(forms.Form):
    note = forms.CharField(
        label=_("Reason"),
        max_length=128,
        error_messages={"required": _("A reason is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(_("A reason is required."))
        return note
