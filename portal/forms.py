from django import forms
from django.utils.translation import gettext_lazy as _

from portal.models import Role
from portal.scope import regions_visible_to
from portal.selectors import roles_manageable_by
from portal.text import PlainTextForm


class StaffCreateForm(PlainTextForm):
    username = forms.CharField(label=_("Username"), max_length=150)
    email = forms.EmailField(label=_("E-mail"), required=False)
    role = forms.ChoiceField(label=_("Role"))
    regions = forms.ModelMultipleChoiceField(
        label=_("Regions"), queryset=None, required=False, widget=forms.CheckboxSelectMultiple
    )
    password = forms.CharField(
        label=_("Initial password"),
        widget=forms.PasswordInput(render_value=False),
        help_text=_("At least 10 characters; the person changes it after signing in."),
    )

    def __init__(self, *args, manager, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = roles_manageable_by(manager)
        self.fields["role"].choices = [c for c in Role.choices if c[0] in allowed]
        self.fields["regions"].queryset = regions_visible_to(manager)

    def clean(self):
        data = super().clean()
        if data.get("role") and data.get("role") != Role.NATIONAL_OPERATOR and not data.get("regions"):
            self.add_error("regions", _("Choose at least one region."))
        return data


class StaffDeactivateForm(PlainTextForm):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=128,
        error_messages={"required": _("A reason is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )
