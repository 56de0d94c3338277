from django import forms
from django.utils.translation import gettext_lazy as _

from portal.text import PlainTextForm


class LinkageUnlinkForm(PlainTextForm):
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
